"""``textdiffseg_server.asgi:app``: MONAI Label's app with JSON errors, a threaded validated ``/infer``, working auth.

Use it with ``python -m monailabel.main start_server --app apps/textdiffseg_app --studies ... --uvicorn_app
textdiffseg_server.asgi:app``. Every other endpoint is MONAI Label's own.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute
from monailabel.app import app as monailabel_app
from monailabel.config import settings
from monailabel.endpoints import infer as monailabel_infer
from monailabel.endpoints.user import auth as monailabel_auth
from starlette.middleware import Middleware

from textdiffseg_server import infer_endpoint
from textdiffseg_server.auth import current_user
from textdiffseg_server.errors import JSONErrorMiddleware
from textdiffseg_server.form_guard import Utf8FieldGuard

INFER_PATH = "/infer/{model}"


def harden(app: FastAPI) -> FastAPI:
    """Swap MONAI Label's ``POST /infer/{model}`` for ours and add the error and UTF-8 middlewares (in place)."""
    # FastAPI keeps included routers by reference and resolves their routes on the first request, so removing the
    # route from MONAI Label's own infer router (before serving) takes it out of the app.
    original = monailabel_infer.router
    original.routes[:] = [
        route
        for route in original.routes
        if not (isinstance(route, APIRoute) and route.path == INFER_PATH and "POST" in route.methods)
    ]
    app.include_router(infer_endpoint.router, prefix=settings.MONAI_LABEL_API_STR)
    if settings.MONAI_LABEL_AUTH_ENABLE:  # MONAI Label's token check refuses every token under PyJWT 2 (see auth.py)
        app.dependency_overrides[monailabel_auth.get_current_user] = current_user
    # user_middleware runs outermost first: CORS (MONAI Label's) -> JSON errors -> UTF-8 guard -> routes, so error
    # answers still carry CORS headers.
    app.user_middleware.append(Middleware(JSONErrorMiddleware))
    app.user_middleware.append(Middleware(Utf8FieldGuard))
    return app


app = harden(monailabel_app)
