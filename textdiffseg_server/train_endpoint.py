"""``DELETE /train/``: stop the running training and record it as stopped; ``GET /train/?check_if_running=true``.

MONAI Label kills the training subprocess, which therefore never writes its final stats: ``/info``'s
``train_stats`` kept saying ``RUNNING`` forever. Here every trainer whose stats still say ``RUNNING`` after the stop
gets ``STOPPED`` (with the time), written atomically beside the old file.

``GET /train/?check_if_running=true`` with no training running answers 204 (no content) instead of MONAI Label's
404: OHIF asks it at every connect and logs the 404 as a failed request; MONAI Label's client (and 3D Slicer's)
read any answer but 200 as "not running", OHIF anything but 200 with ``status: RUNNING``, so both still read it right.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from monailabel.config import settings
from monailabel.endpoints import train as monailabel_train
from monailabel.endpoints.user.auth import RBAC, User
from monailabel.interfaces.utils.app import app_instance
from monailabel.utils.async_tasks.task import AsyncTask

from textdiffseg.atomic_files import write_json_atomic

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/train", tags=["Train"])


def mark_stopped(stats_path: Path) -> bool:
    """Rewrite a ``RUNNING`` stats file as ``STOPPED``; returns whether it changed."""
    try:
        stats = json.loads(stats_path.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(stats, dict) or stats.get("status") != "RUNNING":
        return False
    stats.update(status="STOPPED", stopped_ts=int(time.time()))
    write_json_atomic(stats, stats_path)
    return True


@router.delete("/", summary="Stop the training task (admin)")
def stop_training(user: Annotated[User, Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ADMIN))]) -> Any:
    """MONAI Label's stop, then the stats of every trainer left at ``RUNNING`` become ``STOPPED``."""
    result = monailabel_train.stop()
    for name, trainer in getattr(app_instance(), "_trainers", {}).items():
        stats_path = getattr(trainer, "_stats_path", None)
        if stats_path and mark_stopped(Path(stats_path)):
            logger.info("training of %s stopped by %s", name, user.username)
    return result


@router.get("/", summary="Status of the training task (check_if_running: 204 when none runs)")
def training_status(
    user: Annotated[User, Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))],
    all: bool = False,  # MONAI Label's query parameter name (shadows the builtin)
    check_if_running: bool = False,
) -> Any:
    """MONAI Label's status answer, except ``check_if_running`` with nothing running: 204 instead of 404."""
    if check_if_running:
        running, _ = AsyncTask.status("train", all, True)
        return Response(status_code=204) if running is None else running
    return monailabel_train.status(all, check_if_running)
