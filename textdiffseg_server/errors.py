"""Every error becomes a JSON answer ``{"detail": "..."}`` with a fitting status, never a bare 500 or a stack trace.

Starlette answers ``HTTPException`` itself; what escapes it (MONAI Label's ``MONAILabelException``, a malformed
``params`` string, library errors) reaches :class:`JSONErrorMiddleware`, which answers instead of letting the
exception tear down the connection. The full traceback goes to the server log only.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from monailabel.interfaces.exception import (
    ImageNotFoundException,
    LabelNotFoundException,
    MONAILabelError,
    MONAILabelException,
)
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

from textdiffseg_server.http_middleware import HTTPMiddleware

logger = logging.getLogger(__name__)

MAX_DETAIL_CHARS = 300

# MONAILabelException codes that describe the request rather than the server.
_CLIENT_ERRORS = {MONAILabelError.INVALID_INPUT}


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:MAX_DETAIL_CHARS]


def error_answer(exc: BaseException) -> tuple[int, str]:
    """The HTTP status and one-line message for an exception that escaped the endpoint."""
    status = getattr(exc, "http_status", None)  # the project's client errors (unsafe names, bad stored files)
    if isinstance(status, int) and 400 <= status < 500:
        return status, _first_line(str(exc))
    if isinstance(exc, ImageNotFoundException | LabelNotFoundException):
        return 404, _first_line(str(exc))
    if isinstance(exc, MONAILabelException):
        status = 400 if exc.error in _CLIENT_ERRORS else 500
        return status, _first_line(str(exc.msg)) or exc.error.value
    if isinstance(exc, json.JSONDecodeError):
        return 400, f"request JSON is malformed: {exc.msg} (line {exc.lineno}, column {exc.colno})"
    if isinstance(exc, UnicodeDecodeError):
        return 400, "request is not valid UTF-8"
    return 500, f"internal error ({type(exc).__name__}); the server log has the details"


class JSONErrorMiddleware(HTTPMiddleware):
    """ASGI middleware: an exception raised before the response started becomes a JSON error answer."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """See the class docstring."""
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # noqa: BLE001 - the whole point: answer instead of crashing the connection
            if started:
                raise
            status, detail = error_answer(exc)
            path = scope.get("path", "")
            if status >= 500:
                logger.exception("%s %s failed", scope.get("method", ""), path)
            else:
                logger.warning("%s %s refused (%d): %s", scope.get("method", ""), path, status, detail)
            response: Any = JSONResponse({"detail": detail}, status_code=status)
            await response(scope, receive, send)
