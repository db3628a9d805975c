"""``textdiffseg_server.asgi:app``: MONAI Label's app with the protections installed before it serves.

Optional: ``python -m monailabel.main start_server --app apps/textdiffseg_app --studies ...`` installs the same
protections from the app's ``main.py`` (``textdiffseg_server.install``); naming this module with ``--uvicorn_app``
only installs them earlier, at import.
"""

from __future__ import annotations

from monailabel.app import app as monailabel_app

from textdiffseg_server.install import install_protections

app = install_protections(monailabel_app)
