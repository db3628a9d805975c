"""Atomic file publication for the train task: readers see the old file or the new one, never a partial write."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def _replace_from_temp(dst: Path, write: Any) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the server may run as another user than training
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dst


def publish_file(src: Path, dst: Path) -> Path:
    """Copy ``src`` to a temporary file beside ``dst``, then rename it over ``dst``."""
    with src.open("rb") as source:
        return _replace_from_temp(dst, lambda handle: shutil.copyfileobj(source, handle))


def write_json_atomic(data: dict[str, Any], dst: Path) -> Path:
    """Write ``data`` as indented JSON to ``dst`` atomically."""
    text = json.dumps(data, indent=2).encode("utf-8")
    return _replace_from_temp(dst, lambda handle: handle.write(text))
