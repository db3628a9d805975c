"""``/infer/textdiffseg_clicks``: the same model and request as ``/infer/textdiffseg``, listed as a ``vista3d`` model.

OHIF's Point Prompts tab (MONAI Label 0.8.5's bundle) lists only models whose ``/info`` type is ``deepgrow``,
``deepedit`` or ``vista3d``, and for ``vista3d`` it sends ``points`` + ``point_labels`` + ``label_prompt`` (the class
whose points they are), which is what this app reads (``click_params``). Giving ``textdiffseg`` itself that type would
change the other clients: OHIF's Auto-Segmentation tab sends every label of a ``vista3d`` model as ``label_prompt``
(dozens of prompts instead of the typed one), and 3D Slicer lists only ``segmentation``/``detection`` (and
``deepgrow``/``deepedit``) models, so it would lose the model. Hence a second name for the same task:
``textdiffseg`` stays a ``segmentation`` model (text and class prompts, Slicer, clicks over REST), and this one is
listed, type ``vista3d``, while the server takes clicks: always with click edits on (the default), else only while
the served checkpoint has a click branch (a click request to either name is then a 400 saying so).
"""

from __future__ import annotations

import logging
from typing import Any

from lib.configs.textdiffseg import AppSettings
from lib.infers.text_prompt import TextPromptInfer
from textdiffseg.checkpoint import CheckpointError
from textdiffseg.service import SegmentationService
from textdiffseg.text.encoder import TextEncoderError

logger = logging.getLogger(__name__)

CLICK_MODEL_NAME = "textdiffseg_clicks"
VISTA3D_TYPE = "vista3d"  # OHIF's Point Prompts tab type (MONAI Label's InferType has no member for it)


class PointPromptInfer(TextPromptInfer):
    """:class:`TextPromptInfer` under the ``vista3d`` type, listed while the server takes clicks."""

    def __init__(self, settings: AppSettings, service: SegmentationService) -> None:
        super().__init__(settings, service)
        self.description = (
            "Clicks with text (TextDiffSeg): foreground/background points refine the prompted structure's mask "
            "near them; points + point_labels + label_prompt, or foreground/background, with optional text_prompt"
        )

    def is_valid(self) -> bool:
        """Listed in ``/info`` only when a checkpoint exists and clicks are taken (click edits, or a click branch)."""
        if not super().is_valid():
            return False
        try:
            return self.service.takes_clicks()
        except (CheckpointError, TextEncoderError) as err:
            logger.warning("cannot tell whether the served checkpoint takes clicks: %s", err)
            return False

    def info(self) -> dict[str, Any]:
        """The model's info with type ``vista3d``."""
        info = super().info()
        info["type"] = VISTA3D_TYPE
        return info
