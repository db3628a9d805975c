"""JSON answers carry no absolute server paths and no tracebacks; the full details stay in the server log.

MONAI Label puts server paths in many answers (session info, training stats, task status, error messages) and
returns a training subprocess's output, tracebacks included, from ``GET /train/``. :class:`PathScrubber` rewrites
every ``application/json`` answer: the server's folders (app, studies, sessions, temp, home) become ``<app>``,
``<studies>``, ``<sessions>``, ``<tmp>``, ``<home>``, and lines of a Python traceback are dropped from string lists
(the ``details`` of task status). Other answers (images, labels, HTML) pass through untouched.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from monailabel.config import settings
from starlette.types import Message, Receive, Scope, Send

from textdiffseg_server.http_middleware import HTTPMiddleware

_TRACEBACK_LINE = re.compile(r'^(Traceback \(most recent call last\)|\s+File "|\s+\^+\s*$|\s{4}\S)')


@functools.cache
def server_roots() -> list[tuple[str, str]]:
    """``(folder, placeholder)`` pairs, longest folder first (resolved and as configured; fixed once serving)."""
    named = {
        "<app>": settings.MONAI_LABEL_APP_DIR,
        "<studies>": settings.MONAI_LABEL_STUDIES if "://" not in str(settings.MONAI_LABEL_STUDIES) else "",
        "<sessions>": settings.MONAI_LABEL_SESSION_PATH,
        "<tmp>": tempfile.gettempdir(),
        "<home>": str(Path.home()),
    }
    pairs = set()
    for placeholder, folder in named.items():
        if folder and str(folder) not in ("/", "."):
            pairs.add((str(folder).rstrip("/"), placeholder))
            pairs.add((os.path.realpath(folder), placeholder))
    return sorted(pairs, key=lambda pair: -len(pair[0]))


def scrub(value: Any, roots: list[tuple[str, str]]) -> Any:
    """``value`` (decoded JSON) with server folders replaced and traceback lines removed from string lists."""
    if isinstance(value, str):
        for folder, placeholder in roots:
            value = value.replace(folder, placeholder)
        return value
    if isinstance(value, list):
        if value and all(isinstance(item, str) for item in value):
            value = [item for item in value if not _TRACEBACK_LINE.match(item)]
        return [scrub(item, roots) for item in value]
    if isinstance(value, dict):
        return {scrub(key, roots): scrub(item, roots) for key, item in value.items()}
    return value


class PathScrubber(HTTPMiddleware):
    """ASGI middleware: buffers JSON answers, scrubs them and fixes their ``content-length``."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """See the class docstring."""
        start: Message | None = None
        body = bytearray()

        async def scrubbing_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                if headers.get(b"content-type", b"").startswith(b"application/json"):
                    start = message
                    return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body"):
                return
            await send_scrubbed(start, bytes(body), send)

        await self.app(scope, receive, scrubbing_send)


async def send_scrubbed(start: Message, body: bytes, send: Send) -> None:
    """Send ``start`` and ``body`` with the body scrubbed (unchanged when it is not JSON after all)."""
    try:
        text = json.dumps(scrub(json.loads(body), server_roots())).encode("utf-8")
    except (ValueError, UnicodeDecodeError):
        text = body
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(text)).encode()))
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": text})
