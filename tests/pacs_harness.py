"""A real Orthanc PACS for tests, started and loaded with the project's own ``scripts/pacs.sh``.

Binaries that these tests need (Orthanc, Chromium) come from Debian packages that ``.ci/run`` installs. Locally a
missing binary skips the test; in CI (``CI`` set) it fails, so a CI run can never turn green by skipping them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
PACS_SCRIPT = ROOT / "scripts" / "pacs.sh"
ORTHANC = Path(os.environ.get("ORTHANC", "/usr/sbin/Orthanc"))
DICOMWEB_PLUGIN = Path(os.environ.get("ORTHANC_PLUGINS", "/usr/share/orthanc/plugins")) / "libOrthancDicomWeb.so"


def require_binary(path: Path | str, install_hint: str) -> None:
    """Skip (locally) or fail (in CI) when ``path`` is not an existing file or a command on ``PATH``."""
    if Path(path).is_file() or shutil.which(str(path)):
        return
    message = f"{path} is missing ({install_hint})"
    if os.environ.get("CI"):
        pytest.fail(f"{message}: .ci/run must install it")
    pytest.skip(message)


def require_orthanc() -> None:
    """Orthanc and its DICOMweb plugin must be installed (see :func:`require_binary`)."""
    require_binary(ORTHANC, "apt-get install -y orthanc orthanc-dicomweb")
    require_binary(DICOMWEB_PLUGIN, "apt-get install -y orthanc-dicomweb")


@dataclass
class Pacs:
    """An Orthanc started by ``scripts/pacs.sh`` with its own folder and port."""

    folder: Path
    port: int

    @property
    def dicomweb(self) -> str:
        """The DICOMweb root (what ``--studies`` gets)."""
        return f"http://127.0.0.1:{self.port}/dicom-web"

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for ``scripts/pacs.sh`` pointing at this PACS."""
        return {**os.environ, "PACS_DIR": str(self.folder), "PACS_HTTP_PORT": str(self.port), **extra}

    def script(self, command: str, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess:
        """Run ``scripts/pacs.sh command``; raises with its output when it fails."""
        done = subprocess.run(
            ["bash", str(PACS_SCRIPT), command], env=self.env(**extra), capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise RuntimeError(f"pacs.sh {command} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def series(self, **filters: str) -> list[dict]:
        """QIDO-RS ``/series`` answers (DICOM JSON), optionally filtered (e.g. ``Modality="SEG"``)."""
        answer = requests.get(f"{self.dicomweb}/series", params=filters, timeout=30)
        answer.raise_for_status()
        return answer.json() if answer.content else []

    def stop(self) -> None:
        """Stop Orthanc (pid file under the folder)."""
        self.script("stop", timeout=60)


def start_pacs(folder: Path, port: int) -> Pacs:
    """Start Orthanc on ``127.0.0.1:port`` with config and storage in ``folder`` (fails or skips if not installed)."""
    require_orthanc()
    pacs = Pacs(folder, port)
    pacs.script("start", timeout=120)
    return pacs


def tag_value(dataset_json: dict, tag: str) -> str:
    """The first value of a DICOM JSON attribute (``"0020000E"``), or ``""``."""
    values = dataset_json.get(tag, {}).get("Value") or [""]
    first = values[0]
    return first.get("Alphabetic", "") if isinstance(first, dict) else str(first)
