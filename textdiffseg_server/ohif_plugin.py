"""OHIF's MONAI Label plugin with Class Prompts buttons taken from the model's ``/info`` (``label_groups``).

The plugin bundled with MONAI Label 0.8.5 (``static/ohif/3933.bundle.*.js``) draws five hard-coded buttons in its
Class Prompts tab ("Organs", "Lung/Heart", "Vascular", "Bones", "Muscles"), each ticking a fixed list of
TotalSegmentator names (``this.updateOrganSelection([...])``); only names the model's ``labels`` contain get ticked,
so for another vocabulary they tick little or nothing. That bundle is served here with those five buttons replaced by
one button per ``[group, names]`` entry of the selected model's ``label_groups`` in ``/info`` (none when a model has
none). The check box list itself already is the model's labels. If the bundle is not the expected one (another
MONAI Label version), it is served unchanged and a warning is logged once.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import monailabel
from fastapi import Depends, Response
from fastapi.routing import APIRoute, APIRouter
from monailabel.config import settings
from monailabel.endpoints.user.auth import RBAC, User

logger = logging.getLogger(__name__)

BUNDLE = "3933.bundle.92d0a0e9bc7e6861b7c9.js"  # the monai-label extension of MONAI Label 0.8.5's OHIF build
BUNDLE_PATH = Path(monailabel.__file__).parent / "endpoints" / "static" / "ohif" / BUNDLE
BUTTONS_START = """/*#__PURE__*/react.createElement("button", {
      className: "tmpActionButton",
      onClick: this.onOrgansClickBtn,"""
BUTTONS_END = '}, "Muscles"),'
GROUP_BUTTONS = """...((((this.props.info.data.models || {})[this.state.currentModel || models[0]] || {})
      .label_groups) || []).map(([group, names]) => /*#__PURE__*/react.createElement("button", {
        key: group,
        className: "tmpActionButton",
        onClick: () => this.updateOrganSelection(names),
        title: group,
        style: {
          backgroundColor: '#00a4d9',
          marginRight: '2px',
          marginTop: '2px'
        }
      }, group)),"""


def patch(source: str) -> str | None:
    """The bundle with the group buttons replaced, or ``None`` when it does not have exactly the expected block."""
    if source.count(BUTTONS_START) != 1 or source.count(BUTTONS_END) != 1:
        return None
    start = source.index(BUTTONS_START)
    end = source.index(BUTTONS_END) + len(BUTTONS_END)
    if end <= start or "render()" not in source[source.rfind("class ", 0, start) : start]:
        return None
    return source[:start] + GROUP_BUTTONS + source[end:]


@functools.lru_cache(maxsize=1)
def patched_bundle() -> bytes:
    """The served bundle (patched when possible; read once)."""
    source = BUNDLE_PATH.read_text(encoding="utf-8")
    patched = patch(source)
    if patched is None:
        logger.warning("OHIF plugin %s is not the expected one: its Class Prompts buttons stay as shipped", BUNDLE)
        return source.encode("utf-8")
    return patched.encode("utf-8")


def serve_bundle(user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))) -> Response:  # noqa: B008
    """``GET /ohif/<bundle>``: the plugin with the model's label groups as buttons."""
    return Response(patched_bundle(), media_type="application/javascript")


def install(ohif_router: APIRouter) -> None:
    """Serve the bundle from ``ohif_router`` ahead of its catch-all static route (once; nothing if it is missing)."""
    path = f"{ohif_router.prefix}/{BUNDLE}"
    if not BUNDLE_PATH.is_file() or any(getattr(r, "path", "") == path for r in ohif_router.routes):
        return
    ohif_router.routes.insert(0, APIRoute(path, serve_bundle, methods=["GET"], include_in_schema=False))
