"""Start and stop a real ``python -m monailabel.main start_server`` subprocess for tests (no mocks).

Shared by every test that talks to the app over HTTP: the app is copied without ``model/`` into a temp folder, a
checkpoint is placed as ``model/pretrained_textdiffseg.pt``, and the server listens on a free loopback port. The
server is started the way admins start it (plain ``monailabel start_server``, whose app the TextDiffSeg app hardens
at start-up) unless a test names ``--uvicorn_app`` (``HARDENED_APP``). Tests that train, score or replace the model
pass ``ADMIN_CONF`` (``--conf anonymous_admin true``): those are admin operations.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import requests

APP_SRC = Path(__file__).resolve().parents[1] / "apps" / "textdiffseg_app"
DEMO_CHECKPOINT = APP_SRC / "model" / "pretrained_textdiffseg.pt"
HARDENED_APP = "textdiffseg_server.asgi:app"
ADMIN_CONF = {"anonymous_admin": "true"}
STARTUP_TIMEOUT_S = 180


class ServerStartError(RuntimeError):
    """The server exited or never answered ``/info/``; the message carries the log tail."""


@dataclass
class RunningServer:
    """A server subprocess (its own process group) and where its log goes."""

    url: str
    process: subprocess.Popen
    log: Path
    app_dir: Path

    def log_tail(self, lines: int = 60) -> str:
        """The end of the server log, for assertion messages."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the process group (the server and any training/scoring subprocess it started)."""
        stop_process_group(self.process)


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def copy_app(dest: Path, checkpoint: Path | None) -> Path:
    """Copy the app (no ``model/``, logs, caches) to ``dest``; ``checkpoint`` becomes its pretrained model."""
    shutil.copytree(APP_SRC, dest, ignore=shutil.ignore_patterns("model", "logs", "bin", "__pycache__"))
    (dest / "model").mkdir()
    if checkpoint is not None:
        shutil.copyfile(checkpoint, dest / "model" / "pretrained_textdiffseg.pt")
    return dest


def server_env(tmp: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a test server: offline, no tracking/auto-scoring, temp folders under ``tmp``, 1 thread."""
    for sub in ("tmp", "sessions"):
        (tmp / sub).mkdir(exist_ok=True)
    env = {
        **os.environ,
        "MONAI_LABEL_TRACKING_ENABLED": "false",
        "MONAI_LABEL_AUTO_UPDATE_SCORING": "false",
        "MONAI_LABEL_SESSION_PATH": str(tmp / "sessions"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TMPDIR": str(tmp / "tmp"),
        # Two processes with 2 OpenMP threads each on 2 cores made one inference 25x slower.
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    env.update(extra or {})
    return env


def start_server(
    app_dir: Path,
    studies: str | Path,
    workdir: Path,
    conf: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    uvicorn_app: str | None = None,
    port: int | None = None,
    wait_ready: bool = True,
) -> RunningServer:
    """Start the server in ``workdir`` (log: ``workdir/server.log``, appended) and wait until ``/info/`` answers.

    ``wait_ready=False`` returns at once (for servers that refuse anonymous ``/info/``, e.g. with auth enabled).
    """
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "monailabel.main", "start_server", "--app", str(app_dir), "--studies", str(studies)]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    if uvicorn_app:
        cmd += ["--uvicorn_app", uvicorn_app]
    for key, value in (conf or {}).items():
        cmd += ["--conf", key, value]
    log = workdir / "server.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            cmd, cwd=workdir, env=server_env(workdir, env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = RunningServer(url, process, log, app_dir)
    if wait_ready:
        try:
            wait_until_ready(server)
        except ServerStartError:
            server.stop()
            raise
    return server


def wait_until_ready(server: RunningServer, path: str = "/info/", timeout_s: float = STARTUP_TIMEOUT_S) -> None:
    """Poll ``path`` until it answers (any status below 500), or raise ``ServerStartError`` with the log tail."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerStartError(f"server exited with {server.process.returncode}:\n{server.log_tail(80)}")
        try:
            if requests.get(f"{server.url}{path}", timeout=5).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(1.0)
    raise ServerStartError(f"server not ready after {timeout_s} s:\n{server.log_tail(80)}")


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL it if it has not gone after 20 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)
