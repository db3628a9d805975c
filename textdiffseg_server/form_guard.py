"""Detect a multipart ``params`` field that is not valid UTF-8.

Starlette decodes form fields as UTF-8 and silently falls back to Latin-1, so a prompt sent as raw non-UTF-8 bytes
would arrive as mojibake and be segmented as if the user had typed it. Only the raw bytes tell the two apart, so
this middleware watches the request body as the form parser reads it (python-multipart's streaming parser, the one
Starlette uses; nothing is buffered except the field itself) and records the verdict in ``scope["state"]``, where
the endpoint reads it with :func:`params_encoding_error`.
"""

from __future__ import annotations

from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from textdiffseg_server.http_middleware import HTTPMiddleware

STATE_KEY = "textdiffseg_field_check"
MAX_FIELD_BYTES = 1024 * 1024  # Starlette's own limit for a form field


class _FieldCheck:
    """Feeds body chunks to a multipart parser and checks one field's bytes."""

    def __init__(self, boundary: bytes, field: str) -> None:
        self.field = field
        self.error: str | None = None
        self._name: str | None = None
        self._header_field = b""
        self._header_value = b""
        self._data = bytearray()
        callbacks: Any = {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field_data,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }
        self._parser = MultipartParser(boundary, callbacks)

    def feed(self, chunk: bytes) -> None:
        """Parse the next body chunk (malformed bodies are left for Starlette to refuse)."""
        if chunk and self._parser is not None:
            try:
                self._parser.write(chunk)
            except Exception:  # noqa: BLE001 - a malformed body is Starlette's to report, not ours
                self._parser = None

    def _part_begin(self) -> None:
        self._name, self._data = None, bytearray()

    def _header_field_data(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_field.lower() == b"content-disposition":
            _, options = parse_options_header(self._header_value)
            self._name = options.get(b"name", b"").decode("latin-1")
        self._header_field, self._header_value = b"", b""

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._name == self.field and len(self._data) <= MAX_FIELD_BYTES:
            self._data += data[start:end]

    def _part_end(self) -> None:
        if self._name != self.field:
            return
        try:
            bytes(self._data).decode("utf-8")
        except UnicodeDecodeError as err:
            self.error = f"form field '{self.field}' is not valid UTF-8 (byte {err.start}: {err.reason})"


class Utf8FieldGuard(HTTPMiddleware):
    """ASGI middleware: checks the ``params`` field of multipart POST/PUT bodies for valid UTF-8."""

    def __init__(self, app: ASGIApp, field: str = "params") -> None:
        super().__init__(app)
        self.field = field

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Watch the field's bytes of multipart POST/PUT bodies as the endpoint reads them."""
        if scope.get("method") not in ("POST", "PUT"):
            await self.app(scope, receive, send)
            return
        content_type = dict(scope.get("headers", [])).get(b"content-type", b"")
        kind, options = parse_options_header(content_type)
        if kind != b"multipart/form-data" or b"boundary" not in options:
            await self.app(scope, receive, send)
            return
        check = _FieldCheck(options[b"boundary"], self.field)
        scope.setdefault("state", {})[STATE_KEY] = check

        async def checked_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                check.feed(message.get("body", b""))
            return message

        await self.app(scope, checked_receive, send)


def params_encoding_error(request: Request) -> str | None:
    """The guard's verdict for this request: ``None`` when the field was valid UTF-8 (or absent)."""
    check = request.scope.get("state", {}).get(STATE_KEY)
    return check.error if isinstance(check, _FieldCheck) else None
