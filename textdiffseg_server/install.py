"""Install the server's protections into MONAI Label's FastAPI app, however the server was started.

``monailabel start_server`` serves ``monailabel.app:app`` unless told otherwise; the app's ``main.py`` is imported
inside that app's start-up (lifespan), before the first request. :func:`install_protections` is called from there
(and from ``textdiffseg_server.asgi`` for ``--uvicorn_app textdiffseg_server.asgi:app``); it is idempotent, so
``POST /reload`` re-importing ``main.py`` changes nothing. It:

* swaps MONAI Label's routes that must not run on the event loop or that build paths from client input for ours
  (``routes.py``) and removes the whole-slide (WSI) routes this CT app does not offer;
* adds the middlewares, outermost first after MONAI Label's CORS: gzip of ``/infer`` answers for clients that
  accept it (``compression.py``), path scrubbing of JSON answers
  (``scrub.py``), JSON errors (``errors.py``), the request policy (``policy.py``: admin operations, safe names),
  the UTF-8 check of the ``params`` field (``form_guard.py``);
* replaces MONAI Label's token check, which refuses every token under PyJWT 2 (``auth.py``).

Starlette builds its middleware stack on the first ASGI call (the lifespan start-up itself), so after adding
middlewares the stack is dropped and rebuilt on the next request.
"""

from __future__ import annotations

import logging
import sys

from fastapi import FastAPI
from monailabel.config import settings
from monailabel.endpoints.user import auth as monailabel_auth
from starlette.middleware import Middleware

from textdiffseg_server.auth import current_user
from textdiffseg_server.compression import InferGZip
from textdiffseg_server.errors import JSONErrorMiddleware
from textdiffseg_server.form_guard import Utf8FieldGuard
from textdiffseg_server.policy import RequestPolicy
from textdiffseg_server.routes import replace_routes
from textdiffseg_server.scrub import PathScrubber

logger = logging.getLogger(__name__)

_INSTALLED = "textdiffseg_protections"


def install_protections(app: FastAPI) -> FastAPI:
    """Harden ``app`` in place (once); returns it."""
    if getattr(app.state, _INSTALLED, False):
        return app
    replace_routes(app)
    if settings.MONAI_LABEL_AUTH_ENABLE:
        app.dependency_overrides[monailabel_auth.get_current_user] = current_user
    outermost_first = [InferGZip, PathScrubber, JSONErrorMiddleware, RequestPolicy, Utf8FieldGuard]
    app.user_middleware.extend(Middleware(cls) for cls in outermost_first)
    app.middleware_stack = None  # rebuilt with the middlewares above on the next request
    setattr(app.state, _INSTALLED, True)
    logger.info("textdiffseg_server protections installed")
    return app


def install_into_running_server() -> bool:
    """Harden MONAI Label's own app when this process is a MONAI Label server (called from the app's ``main.py``).

    Returns whether a server app was found. Training and scoring subprocesses import ``main.py`` too; they serve
    nothing and ``monailabel.app`` is not imported there, so nothing happens.
    """
    module = sys.modules.get("monailabel.app")
    if module is None:
        return False
    install_protections(module.app)
    return True
