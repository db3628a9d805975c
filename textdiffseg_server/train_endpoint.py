"""``DELETE /train/``: stop the running training and record it as stopped.

MONAI Label kills the training subprocess, which therefore never writes its final stats: ``/info``'s
``train_stats`` kept saying ``RUNNING`` forever. Here every trainer whose stats still say ``RUNNING`` after the stop
gets ``STOPPED`` (with the time), written atomically beside the old file.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from monailabel.config import settings
from monailabel.endpoints import train as monailabel_train
from monailabel.endpoints.user.auth import RBAC, User
from monailabel.interfaces.utils.app import app_instance

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
