"""A long-lived segmentation service: the checkpoint and text encoder loaded once, reloaded when the file changes.

Servers (the MONAI Label app) keep one :class:`SegmentationService`; training publishes a new checkpoint by atomic
rename, and the next request sees the new modification time and reloads. A lock makes concurrent requests safe.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from monai.data import MetaTensor

from textdiffseg.checkpoint import CheckpointError, load_checkpoint
from textdiffseg.inference import DEFAULT_MAX_VOXELS, Prediction, Segmenter
from textdiffseg.networks.model import TextDiffSeg
from textdiffseg.text.encoder import TextEncoder

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceOptions:
    """How the service runs the model."""

    checkpoint: Path
    text_encoder: str | None = None  # None: the encoder the checkpoint records
    steps: int | None = None
    ensemble: int = 1
    device: str = "cpu"
    max_voxels: int = DEFAULT_MAX_VOXELS
    overlap: float = 0.25


class SegmentationService:
    """Loads lazily, reloads on checkpoint change, and serialises model use across threads."""

    def __init__(self, options: ServiceOptions) -> None:
        self.options = options
        self._lock = threading.RLock()
        self._loaded_mtime: float | None = None
        self._model: TextDiffSeg | None = None
        self._encoders: dict[str, TextEncoder] = {}

    @property
    def available(self) -> bool:
        """True when a checkpoint file exists."""
        return Path(self.options.checkpoint).is_file()

    def _encoder(self, name: str) -> TextEncoder:
        if name not in self._encoders:
            self._encoders[name] = TextEncoder(name, device=self.options.device)
        return self._encoders[name]

    def model(self) -> tuple[TextDiffSeg, TextEncoder]:
        """The current model and its text encoder, (re)loaded if the checkpoint file changed."""
        path = Path(self.options.checkpoint)
        with self._lock:
            try:
                mtime = path.stat().st_mtime
            except FileNotFoundError as err:
                raise CheckpointError(f"no model checkpoint at {path}; train one or copy model.pt there") from err
            if self._model is None or mtime != self._loaded_mtime:
                model, _ = load_checkpoint(path)
                encoder = self._encoder(self.options.text_encoder or model.config.text_encoder)
                load_checkpoint(path, encoder)  # validates the encoder against the checkpoint
                self._model, self._loaded_mtime = model.to(self.options.device), mtime
                logger.info("loaded %s (%s parameters)", path, sum(p.numel() for p in model.parameters()))
            return self._model, self._encoder(self.options.text_encoder or self._model.config.text_encoder)

    def segment(
        self,
        image: MetaTensor,
        prompts: list[str],
        ensemble: int | None = None,
        steps: int | None = None,
        seed: int = 0,
    ) -> Prediction:
        """Segment ``prompts`` on ``image`` (channel-first HU ``MetaTensor``) on the image's own grid."""
        with self._lock:
            model, encoder = self.model()
            segmenter = Segmenter(
                model,
                encoder,
                steps=steps or self.options.steps,
                ensemble=ensemble or self.options.ensemble,
                overlap=self.options.overlap,
                device=self.options.device,
                seed=seed,
                max_voxels=self.options.max_voxels,
            )
            with torch.inference_mode():
                return segmenter.predict(image, prompts)
