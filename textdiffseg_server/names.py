"""The one rule for every client-supplied name that can reach a file path: ids, tags, session ids, file names.

MONAI Label joins image ids, label tags, session ids and upload file names onto folders without checking them, so
``image=../../x`` writes outside the datastore. Every such value must pass :func:`check_name` (a single path
component, printable, not ``.``/``..``, not hidden, bounded length) and every path built from one must pass
:func:`check_inside` (resolved, symlinks followed, still under its root). The HTTP layer
(``textdiffseg_server.policy``) and the datastore (``lib/datastores/checked_local.py``) both apply them, so a value
that slips past one is still refused by the other.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

MAX_NAME_CHARS = 200
# One path component: no separators, no control characters (NUL included), no leading dot (".", "..", hidden files),
# no leading/trailing whitespace. Letters of any script are fine (ids are file names of the studies folder).
_NAME = re.compile(r"^(?![.\s])[^/\\\x00-\x1f\x7f]+(?<!\s)$")


class UnsafeNameError(ValueError):
    """A client-supplied name is not a safe single path component, or a path escapes its root."""

    http_status = 400  # read by ``errors.error_answer``


def is_safe_name(value: object) -> bool:
    """True when ``value`` is a string :func:`check_name` accepts."""
    return isinstance(value, str) and len(value) <= MAX_NAME_CHARS and bool(_NAME.match(value))


def check_name(value: object, what: str) -> str:
    """Return ``value`` when it is a safe single path component; raise :class:`UnsafeNameError` naming ``what``."""
    if not is_safe_name(value):
        shown = repr(value)[:80]
        raise UnsafeNameError(
            f"{what} {shown} is not allowed: it must be one file name (no '/', '\\', control characters or leading '.',"
            f" at most {MAX_NAME_CHARS} characters)"
        )
    return str(value)


def check_inside(path: str | os.PathLike[str], root: str | os.PathLike[str], what: str) -> Path:
    """``path`` resolved (symlinks followed); :class:`UnsafeNameError` unless it lies under ``root`` (resolved)."""
    resolved = Path(os.path.realpath(path))
    base = Path(os.path.realpath(root))
    if resolved != base and base not in resolved.parents:
        raise UnsafeNameError(f"{what} is outside its folder")
    return resolved
