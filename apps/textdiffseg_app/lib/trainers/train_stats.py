"""The train task's stats file (``model/textdiffseg/train_stats.json``), served as ``/info``'s ``train_stats``.

It is rewritten atomically (readers see the old file or the new one) at the start of a run, at every progress report
while it runs (``status: RUNNING`` with step, epoch, elapsed, ETA and the last loss) and at the end (``DONE``,
``KEPT`` when the publish gate kept the served model, or ``ERROR`` with a one-line ``error``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from textdiffseg.atomic_files import write_json_atomic
from textdiffseg.train_progress import ProgressReport


class TrainStats:
    """One run's stats, written to ``path`` after every change."""

    def __init__(self, path: Path, **initial: Any) -> None:
        self.path = path
        self.data: dict[str, Any] = {"status": "RUNNING", **initial}
        self.write()

    def write(self) -> None:
        """Publish the current stats atomically."""
        write_json_atomic(self.data, self.path)

    def update(self, **values: Any) -> None:
        """Change some entries and publish."""
        self.data.update(values)
        self.write()

    def progress(self, report: ProgressReport) -> None:
        """A progress report of the running loop (the hook ``run_training`` calls at every epoch end)."""
        self.update(status="RUNNING", updated_ts=int(time.time()), **report.as_stats())

    def error(self, err: BaseException) -> str:
        """Record a failure (one line: the exception's type and first line) and return that line."""
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        line = f"{type(err).__name__}: {first}" if first else type(err).__name__
        self.update(status="ERROR", error=line, end_ts=int(time.time()))
        return line
