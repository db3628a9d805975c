"""The app's ``lib`` package imported for unit tests the way MONAI Label imports it.

The package is named ``lib`` (MONAI Label requires it), so the app folder is on ``sys.path`` only while a test module
uses it, and every ``lib`` module is forgotten before and after (another app's ``lib`` must not leak in or out).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

APP_DIR = Path(__file__).resolve().parents[1] / "apps" / "textdiffseg_app"


def _drop_lib_modules() -> None:
    for name in [m for m in sys.modules if m == "lib" or m.startswith("lib.")]:
        del sys.modules[name]


@contextmanager
def app_modules(**modules: str) -> Iterator[SimpleNamespace]:
    """``app_modules(config="lib.configs.textdiffseg")`` -> ``SimpleNamespace(config=<that module>)``."""
    _drop_lib_modules()
    sys.path.insert(0, str(APP_DIR))
    try:
        yield SimpleNamespace(**{key: importlib.import_module(name) for key, name in modules.items()})
    finally:
        sys.path.remove(str(APP_DIR))
        _drop_lib_modules()
