"""Checks on an ``/infer`` request that MONAI Label leaves to chance, each raising a 4xx ``HTTPException``.

Without them a malformed ``params`` string, an unknown model or image id, or an empty upload ends in a bare 500;
and MONAI Label treats an ``image`` value naming an existing server-side file as that file, which lets any client
read arbitrary paths on the server. Here an ``image`` must be an id of the datastore.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import HTTPException, UploadFile
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.app import MONAILabelApp

from textdiffseg_server.names import UnsafeNameError, check_name

# MONAI Label session ids are UUID strings; anything else must not reach its path joins.
_SESSION_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
# Request keys MONAI Label sets itself from the query, the upload or the session; ``params`` must not override them
# (``"image": "/etc/passwd"`` would segment a server file, ``"model"`` would skip the model check).
RESERVED_PARAMS = ("image", "label", "session", "model")
RESULT_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".seg.nrrd", ".mha")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
RESULT_DTYPES = ("uint8", "uint16", "int16", "int32", "float32")
# MONAI Label's switches, read with ``strtobool`` or as truthy values: a bool, or a true/false word
SWITCH_PARAMS = ("save_label", "skip_writer", "result_compress", "result_write_to_file")
SWITCH_WORDS = ("true", "false", "1", "0", "yes", "no", "on", "off")


def parse_params(params: str | None) -> dict[str, Any]:
    """The ``params`` form field as a JSON object (400 when it is not one)."""
    if params is None or params.strip() == "":
        return {}
    try:
        value = json.loads(params)
    except json.JSONDecodeError as err:
        raise HTTPException(400, f"params is not valid JSON: {err.msg} at character {err.pos}") from err
    if not isinstance(value, dict):
        raise HTTPException(400, f"params must be a JSON object, got {type(value).__name__}")
    return value


def check_params(params: dict[str, Any]) -> None:
    """400 for ``params`` values that would reach a path or a logger unchecked (see ``RESERVED_PARAMS``)."""
    for key in RESERVED_PARAMS:
        if key in params:
            raise HTTPException(400, f"params may not set '{key}': give it in the query (?{key}=...) or upload a file")
    try:
        if params.get("label_tag") not in (None, ""):
            check_name(params["label_tag"], "label_tag")
    except UnsafeNameError as err:
        raise HTTPException(400, str(err)) from err
    extension = params.get("result_extension")
    if extension not in (None, "") and extension not in RESULT_EXTENSIONS:
        raise HTTPException(400, f"result_extension must be one of {', '.join(RESULT_EXTENSIONS)}")
    dtype = params.get("result_dtype")
    if dtype not in (None, "") and dtype not in RESULT_DTYPES:
        raise HTTPException(400, f"result_dtype must be one of {', '.join(RESULT_DTYPES)}")
    for key in SWITCH_PARAMS:
        value = params.get(key)
        is_word = isinstance(value, str) and value.strip().lower() in SWITCH_WORDS
        if value is not None and not isinstance(value, bool) and not is_word:
            raise HTTPException(400, f"{key} must be true or false")
    level = params.get("logging")
    if level is not None and (not isinstance(level, str) or level.upper() not in LOG_LEVELS):
        raise HTTPException(400, f"logging must be one of {', '.join(LOG_LEVELS)}")


def check_model(app: MONAILabelApp, model: str) -> None:
    """404 unless ``model`` is one of the app's infer tasks.

    Read from the app's task table (``_infers``, MONAI Label has no public accessor) rather than ``app.info()``:
    ``info()`` hides models without a usable checkpoint, which must stay a 503 naming the missing checkpoint, and it
    would compute the datastore status a second time per request (``run_inference`` already calls it once).
    """
    models = getattr(app, "_infers", None)
    if models is None:
        models = app.info().get("models", {})
    if model not in models:
        known = ", ".join(sorted(models)) or "none"
        raise HTTPException(404, f"unknown model '{model[:80]}'; this server has: {known}")


def check_session(app: MONAILabelApp, session_id: str) -> None:
    """404 unless ``session_id`` names a live session."""
    if not _SESSION_ID.match(session_id) or app.sessions() is None or app.sessions().get_session(session_id) is None:
        raise HTTPException(404, f"session '{session_id[:80]}' does not exist (expired or never created)")


def check_upload(file: UploadFile) -> None:
    """400 for an empty upload (the loader would fail with an unhelpful message)."""
    file.file.seek(0, 2)
    size = file.file.tell()
    file.file.seek(0)
    if size == 0:
        raise HTTPException(400, f"uploaded file '{file.filename}' is empty (0 bytes)")


def check_image_id(app: MONAILabelApp, image: str) -> None:
    """400 for an unsafe name (never read as a server path), 404 unless ``image`` is an id in the datastore."""
    if not image:
        raise HTTPException(400, "no input: give an image id (?image=...), a session_id, or upload a file")
    try:
        check_name(image, "image")
    except UnsafeNameError as err:
        raise HTTPException(400, str(err)) from err
    datastore = app.datastore()
    if isinstance(datastore, LocalDatastore) and image not in datastore.list_images():
        raise HTTPException(404, f"image '{image[:120]}' is not in the datastore")
