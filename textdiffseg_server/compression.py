"""gzip on the wire for segmentation answers, for clients that accept it (``Accept-Encoding: gzip``).

OHIF's MONAI Label plugin asks ``/infer`` for NRRD with ``result_compress: false`` (its NRRD reader wants raw data):
for a 512x512x236 CT that was a 62 MB answer. Browsers accept gzip transfer encoding and inflate it before the
plugin sees the bytes, so the answer travels gzip-compressed (about 0.3 MB) and reaches the plugin unchanged.
Clients that do not send ``Accept-Encoding: gzip`` (MONAI Label's Python client, 3D Slicer) get the same bytes as
before. Only ``/infer/`` answers are compressed: DICOM pixel data through the DICOMweb proxy would cost CPU for
little gain.
"""

from __future__ import annotations

from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from textdiffseg_server.http_middleware import HTTPMiddleware

COMPRESSED_PATHS = ("/infer/",)
COMPRESS_LEVEL = 6  # 62 MB label map: 0.2 s, 0.3 MB (level 9: no faster to send, no smaller to matter)


class InferGZip(HTTPMiddleware):
    """Starlette's gzip middleware, applied to :data:`COMPRESSED_PATHS` only."""

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app)
        self.gzip = GZipMiddleware(app, minimum_size=1000, compresslevel=COMPRESS_LEVEL)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        target = self.gzip if path.startswith(COMPRESSED_PATHS) else self.app
        await target(scope, receive, send)
