"""The one segmentation service of the app, following whichever checkpoint is served at request time.

Inference and uncertainty scoring share it. ``textdiffseg.service.SegmentationService`` already reloads when its
checkpoint file changes (training publishes ``model/textdiffseg.pt`` by atomic rename); this wrapper additionally
switches files when the served path changes, e.g. from the shipped ``pretrained_textdiffseg.pt`` to the first
trained ``textdiffseg.pt``.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from lib.configs.textdiffseg import AppSettings
from textdiffseg.checkpoint import CheckpointError
from textdiffseg.service import SegmentationService, ServiceOptions

logger = logging.getLogger(__name__)


class ModelService:
    """Lazily builds a :class:`SegmentationService` for the currently served checkpoint."""

    def __init__(self, settings: AppSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._service: SegmentationService | None = None

    def checkpoint(self) -> Path:
        """The checkpoint to serve now; raises :class:`CheckpointError` (HTTP 503) when there is none."""
        path = self.settings.current_model()
        if path is None:
            names = " or ".join(p.name for p in reversed(self.settings.model_candidates()))
            raise CheckpointError(
                f"no model checkpoint in {self.settings.model_dir}: "
                f"train one (POST /train/textdiffseg) or put {names} there"
            )
        return path

    def service(self) -> SegmentationService:
        """The service for the current checkpoint (a new one when the served file changed)."""
        path = self.checkpoint()
        with self._lock:
            if self._service is None or Path(self._service.options.checkpoint) != path:
                logger.info("serving checkpoint %s", path)
                self._service = SegmentationService(
                    ServiceOptions(
                        checkpoint=path,
                        text_encoder=self.settings.text_encoder,
                        steps=self.settings.sampling_steps,
                        ensemble=self.settings.ensemble,
                        device=self.settings.device,
                        max_voxels=self.settings.max_voxels,
                    )
                )
            return self._service
