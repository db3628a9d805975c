"""Optional voxelwise uncertainty output of ``/infer/textdiffseg`` (request ``"uncertainty": true``).

The infer task writes the map (largest per-prompt entropy per voxel, bits, float32, on the input grid) to a temporary
NIfTI file and records its path in the result under :data:`UNCERTAINTY_FILE_KEY`. The app's ``infer`` then removes
that key from the response and, when the request named an image of the datastore, saves the file as that image's
label with tag ``uncertainty`` (``labels/uncertainty/<image id>.nii.gz`` in a local datastore; fetch it with
``GET /datastore/label?label=<image id>&tag=uncertainty``). For uploaded files and sessions it is discarded.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

import numpy as np
from monailabel.interfaces.datastore import Datastore
from monailabel.transform.writer import write_itk

logger = logging.getLogger(__name__)

UNCERTAINTY_FILE_KEY = "_uncertainty_file"
UNCERTAINTY_TAG = "uncertainty"


def write_uncertainty_map(volume: np.ndarray, affine: np.ndarray) -> str:
    """Write a float32 map to a new temporary ``.nii.gz`` (same geometry conventions as MONAI Label's label writer)."""
    fd, path = tempfile.mkstemp(suffix=".nii.gz", prefix="uncertainty_")
    os.close(fd)
    write_itk(volume.astype(np.float32), path, np.asarray(affine, dtype=np.float64), np.float32, True)
    return path


def store_uncertainty_label(result: dict[str, Any], image_id: object, datastore: Datastore) -> None:
    """Move the map named in ``result["params"]`` into the datastore (tag ``uncertainty``) or discard it."""
    params = result.get("params")
    path = params.pop(UNCERTAINTY_FILE_KEY, None) if isinstance(params, dict) else None
    if not path:
        return
    try:
        if isinstance(image_id, str) and not os.path.exists(image_id) and image_id in set(datastore.list_images()):
            datastore.save_label(
                image_id, path, UNCERTAINTY_TAG, {"model": "textdiffseg", "prompts": params.get("prompts", [])}
            )
            params["uncertainty_label"] = {"id": image_id, "tag": UNCERTAINTY_TAG}
        else:
            logger.info("uncertainty map not saved: the image is not in the datastore")
    finally:
        if os.path.exists(path):
            os.remove(path)
