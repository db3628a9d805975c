"""``PUT /model/{model}``: an admin replaces the served checkpoint, only with one that loads.

MONAI Label copies whatever bytes arrive over the served file (any annotator may, and a garbage upload makes every
infer a 503). Here the upload is saved to a temporary file and loaded as a TextDiffSeg checkpoint
(``weights_only=True``, config and weights checked); only then is it copied over the served file
(``atomic_files.copy_atomic``); a file that does not load is a 400 and the served model is untouched.
``policy`` already restricted the route to admins.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, UploadFile
from monailabel.config import settings
from monailabel.endpoints.user.auth import RBAC, User
from monailabel.interfaces.utils.app import app_instance
from monailabel.utils.others.generic import file_checksum

from textdiffseg.atomic_files import copy_atomic
from textdiffseg.checkpoint import CheckpointError, load_checkpoint

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/model", tags=["Model"])


@router.put("/{model}", summary="Replace the served checkpoint (admin; the upload must load)")
def update_model(
    model: str,
    file: UploadFile,
    user: Annotated[User, Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ADMIN))],
) -> dict:
    """Validate the uploaded checkpoint, then publish it atomically as the model's served file."""
    instance = app_instance()
    if model not in getattr(instance, "_infers", {}):
        raise HTTPException(404, f"unknown model '{model[:80]}'")
    served = instance.model_file(model, validate=False)
    if not served:
        raise HTTPException(404, f"model '{model}' has no checkpoint file configured")
    served_path = Path(served)
    fd, tmp = tempfile.mkstemp(prefix="model_upload_", suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(file.file, out)
        try:
            load_checkpoint(tmp)  # weights_only=True; config and weights must fit
        except CheckpointError as err:
            raise HTTPException(400, "the upload is not a loadable TextDiffSeg checkpoint") from err
        copy_atomic(tmp, served_path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    logger.info("model %s replaced by %s", model, user.username)
    return {"checksum": file_checksum(str(served_path)), "modified_time": int(served_path.stat().st_mtime)}
