"""Atomic file publication: readers see the old file or the new one, never a partial write.

Every writer goes through :func:`write_atomic`: the content is written to a temporary file beside the destination,
flushed and fsynced, made world-readable (``0o644``: ``mkstemp`` creates ``0600``, and the server may run as another
user than training), then renamed over the destination. A failure (or a SIGKILL) at any point leaves the old file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

FILE_MODE = 0o644


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename it over ``path``; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_bytes_atomic(data: bytes, path: str | Path) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return write_atomic(path, lambda handle: handle.write(data))


def copy_atomic(src: str | Path, dst: str | Path) -> Path:
    """Copy ``src`` to ``dst`` atomically (``dst`` is replaced in one rename)."""
    with Path(src).open("rb") as source:
        return write_atomic(dst, lambda handle: shutil.copyfileobj(source, handle))


def write_json_atomic(data: Any, path: str | Path) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    return write_bytes_atomic(json.dumps(data, indent=2).encode("utf-8"), path)


def torch_save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically."""
    return write_atomic(path, lambda handle: torch.save(obj, handle))
