"""Who may call what, and which query values may reach a path: checked before MONAI Label's routes see a request.

Admin operations (they change what is served, read the server's log, or run long jobs over the whole datastore):
``PUT``/``DELETE /model/*``, ``POST /reload``, ``GET /logs*``, ``POST``/``DELETE /train*``, ``POST``/``DELETE
/scoring*``, ``POST``/``DELETE /batch/infer*``, ``DELETE /datastore*``. With auth off (MONAI Label's default) they
are refused (403) unless the server was started with ``--conf anonymous_admin true`` (a trusted single-user
machine); with auth on (``MONAI_LABEL_AUTH_ENABLE``) the caller's token must carry the admin role. MONAI Label itself
lets any annotator upload or delete the model, and lets anyone do everything when auth is off.

Whole-slide routes (``/infer/wsi*``) are not offered by this CT app (404).

Every query parameter that MONAI Label joins onto a folder (``image``, ``label``, ``id``, ``tag``, ``session_id``,
``label_tag``) and the ``{session_id}`` of ``/session/...`` must pass ``textdiffseg_server.names.check_name``
(400 otherwise): one answer for every unsafe value, whether or not such a file exists, so the server is no oracle.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

import jwt
import requests
from monailabel.config import settings
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from textdiffseg.params import parse_bool
from textdiffseg_server.auth import user_from_token
from textdiffseg_server.http_middleware import HTTPMiddleware
from textdiffseg_server.names import UnsafeNameError, check_name

ANONYMOUS_ADMIN_CONF = "anonymous_admin"

ADMIN_ROUTES: list[tuple[frozenset[str], re.Pattern[str]]] = [
    (frozenset({"PUT", "DELETE"}), re.compile(r"^/model/[^/]+/?$")),
    (frozenset({"POST"}), re.compile(r"^/reload/?$")),
    (frozenset({"GET"}), re.compile(r"^/logs(/.*)?$")),
    (frozenset({"POST", "DELETE"}), re.compile(r"^/(train|scoring|batch/infer)(/.*)?$")),
    (frozenset({"DELETE"}), re.compile(r"^/datastore(/.*)?$")),
]
DISABLED_ROUTES = re.compile(r"^/infer/wsi")
NAMED_QUERY_PARAMS = ("image", "label", "id", "tag", "session_id", "label_tag")
SESSION_PATH = re.compile(r"^/session/(?P<session_id>[^/]+)/?$")


def anonymous_admin_allowed() -> bool:
    """``--conf anonymous_admin true``: admin operations without auth (trusted single-user machines only)."""
    try:  # the app refuses to start on a bad value (AppSettings); anything unreadable here means "no"
        return parse_bool(settings.MONAI_LABEL_APP_CONF.get(ANONYMOUS_ADMIN_CONF, False))
    except ValueError:
        return False


def is_admin_route(method: str, path: str) -> bool:
    """True for the admin operations listed in the module docstring."""
    return any(method in methods and pattern.match(path) for methods, pattern in ADMIN_ROUTES)


def _bearer_token(scope: Scope) -> str | None:
    header = dict(scope.get("headers", [])).get(b"authorization", b"").decode("latin-1")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def admin_refusal(scope: Scope) -> tuple[int, str] | None:
    """``None`` when the caller may run an admin operation, else the status and message of the refusal."""
    if not settings.MONAI_LABEL_AUTH_ENABLE:
        if anonymous_admin_allowed():
            return None
        return 403, (
            "admin operation refused: this server runs without authentication; enable it "
            "(MONAI_LABEL_AUTH_ENABLE=true) and log in as an admin, or start the server with "
            f"--conf {ANONYMOUS_ADMIN_CONF} true on a trusted single-user machine (see SECURITY.md)"
        )
    token = _bearer_token(scope)
    if token is None:
        return 401, "admin operation: log in and send the token (Authorization: Bearer ...)"
    try:
        user = user_from_token(token)
    except jwt.InvalidTokenError as err:
        return 401, f"invalid token: {err}"
    except requests.RequestException:
        return 503, "cannot reach the identity provider"
    if settings.MONAI_LABEL_AUTH_ROLE_ADMIN not in (user.roles or []):
        return 403, f"admin operation: user {user.username!r} lacks the '{settings.MONAI_LABEL_AUTH_ROLE_ADMIN}' role"
    return None


def name_refusal(scope: Scope) -> str | None:
    """The message for the first unsafe id/tag/session value of the request, or ``None``."""
    query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    try:
        for key, value in query:
            if key in NAMED_QUERY_PARAMS and value != "":
                check_name(value, key)
        match = SESSION_PATH.match(scope.get("path", ""))
        if match:
            check_name(match.group("session_id"), "session_id")
    except UnsafeNameError as err:
        return str(err)
    return None


class RequestPolicy(HTTPMiddleware):
    """ASGI middleware applying the module's rules; refusals are JSON ``{"detail": ...}`` answers."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """See the class docstring."""
        method, path = scope.get("method", "GET"), scope.get("path", "")
        refusal: tuple[int, str] | None = None
        if DISABLED_ROUTES.match(path):
            refusal = 404, "whole-slide (WSI) inference is not offered by this CT app"
        elif is_admin_route(method, path):
            refusal = admin_refusal(scope)
        if refusal is None:
            message = name_refusal(scope)
            refusal = (400, message) if message else None
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, detail = refusal
        await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)
