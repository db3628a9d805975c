"""``POST /infer/{model}`` with MONAI Label's contract, validated, and run in a worker thread.

MONAI Label's own endpoint is an ``async def`` that calls the (synchronous) inference directly, so every other
request waits while a model runs. This one is a plain ``def``: FastAPI runs it in its thread pool and the event loop
keeps answering ``/info`` and the rest. After the checks in ``infer_checks`` it hands over to MONAI Label's
``run_inference`` unchanged, so responses (json, image, multipart, DICOM-SEG) are exactly MONAI Label's.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, File, Form, HTTPException, Request, UploadFile
from monailabel.config import settings
from monailabel.endpoints.infer import ResultType, run_inference
from monailabel.endpoints.user.auth import RBAC, User
from monailabel.interfaces.utils.app import app_instance
from monailabel.utils.others.generic import remove_file

from textdiffseg_server.form_guard import params_encoding_error
from textdiffseg_server.infer_checks import (
    check_image_id,
    check_model,
    check_params,
    check_session,
    check_upload,
    parse_params,
)

router = APIRouter(prefix="/infer", tags=["Infer"])


@router.post("/{model}", summary="Run inference (validated; runs outside the event loop)")
def infer(
    request: Request,
    background_tasks: BackgroundTasks,
    model: str,
    user: Annotated[User, Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))],
    image: str = "",
    session_id: str = "",
    params: Annotated[str, Form()] = "{}",
    file: Annotated[UploadFile | None, File()] = None,
    label: Annotated[UploadFile | None, File()] = None,
    output: ResultType | None = None,
):  # noqa: ANN201 - MONAI Label's response types (JSON dict, FileResponse, multipart Response)
    """Validate the request (4xx with a message), then run MONAI Label's inference path in this worker thread."""
    encoding_error = params_encoding_error(request)
    if encoding_error:
        raise HTTPException(400, encoding_error)
    check_params(parse_params(params))
    app = app_instance()
    check_model(app, model)
    if session_id:
        check_session(app, session_id)
    elif file:
        check_upload(file)
    else:
        check_image_id(app, image)
    try:
        return run_inference(background_tasks, model, image, session_id, params, file, label, output)
    except BaseException:
        remove_temp_files(background_tasks)
        raise


def remove_temp_files(background_tasks: BackgroundTasks) -> None:
    """Run the clean-up MONAI Label scheduled for after the response (uploads it saved to temp files) right away.

    Background tasks only run after a successful response, so without this every refused upload stays in the
    temp folder.
    """
    for task in background_tasks.tasks:
        if task.func is remove_file:
            task.func(*task.args, **task.kwargs)
