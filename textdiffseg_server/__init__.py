"""The hardened MONAI Label ASGI app that serves TextDiffSeg.

MONAI Label 0.8.5 answers unexpected errors with a bare ``500`` (and the next keep-alive request on that connection
fails) and runs ``/infer`` inside the asyncio event loop, so one inference stalls every other request. Start the
server with ``--uvicorn_app textdiffseg_server.asgi:app`` to get JSON 4xx answers for bad requests and inference in a
worker thread. This package knows MONAI Label but no tensor math; the model lives in ``textdiffseg``.
"""
