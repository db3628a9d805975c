"""The one object a server keeps to follow the served checkpoint: load lazily, reload on change, one lock.

A server (the MONAI Label app) keeps one :class:`SegmentationService` for its candidate checkpoint paths, in MONAI
Label order: the last one that exists is served (the app lists the shipped ``pretrained_textdiffseg.pt`` before the
trained ``textdiffseg.pt``). Training publishes a new checkpoint by atomic rename; the next request sees another path
or a new modification time and reloads it with :func:`textdiffseg.checkpoint.load_for_inference`. One lock makes
concurrent requests safe (they run one at a time on the model).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from monai.data import MetaTensor

from textdiffseg.checkpoint import CheckpointError, load_fine_stage, load_for_inference, read_config
from textdiffseg.click_edit import DEFAULT_CLICK_EDITS
from textdiffseg.data.vocabulary import PromptVocabulary
from textdiffseg.inference import DEFAULT_MAX_DENOISER_CALLS, DEFAULT_MAX_VOXELS, Prediction, PromptClicks, Segmenter
from textdiffseg.networks.model import TextDiffSeg
from textdiffseg.text.encoder import TextEncoder

logger = logging.getLogger(__name__)


def served_checkpoint(candidates: Sequence[str | Path]) -> Path | None:
    """The checkpoint served among ``candidates`` (MONAI Label order): the last one that exists, else ``None``."""
    return next((Path(p) for p in reversed(candidates) if Path(p).is_file()), None)


@dataclass(frozen=True)
class ServiceOptions:
    """How the service runs the model."""

    text_encoder: str | None = None  # None: the encoder the checkpoint records
    steps: int | None = None
    ensemble: int = 1
    device: str = "cpu"
    max_voxels: int = DEFAULT_MAX_VOXELS
    max_denoiser_calls: int | None = DEFAULT_MAX_DENOISER_CALLS
    overlap: float = 0.25
    how_to_train: str = "train one"  # the first remedy the "no checkpoint" error names
    vocabulary: PromptVocabulary | None = None  # the served vocabulary (prompt matching); None: the built-in one
    fine_pass: bool = True  # run the checkpoint's zoom-in fine stage, if it has one (textdiffseg.zoom_in)
    click_edits: bool = True  # clicks edit masks (textdiffseg.click_edit); off: only a click branch takes them


class SegmentationService:
    """Serves the last existing checkpoint of ``candidates``; reloads when that path or its mtime changes."""

    def __init__(self, candidates: Sequence[str | Path], options: ServiceOptions | None = None) -> None:
        if not candidates:
            raise ValueError("no candidate checkpoint paths")
        self.candidates = [Path(p) for p in candidates]
        self.options = options or ServiceOptions()
        self._lock = threading.RLock()
        self._loaded: tuple[Path, float] | None = None
        self._model: tuple[TextDiffSeg, TextEncoder] | None = None
        self._fine_stage: TextDiffSeg | None = None
        self._encoders: dict[str, TextEncoder] = {}
        self._clicks_known: tuple[tuple[Path, float], bool] | None = None  # (path, mtime) -> has a click branch

    def _missing(self) -> CheckpointError:
        names = " or ".join(p.name for p in reversed(self.candidates))
        return CheckpointError(
            f"no model checkpoint in {self.candidates[-1].parent}: {self.options.how_to_train} or put {names} there"
        )

    def checkpoint(self) -> Path:
        """The checkpoint to serve now; raises :class:`CheckpointError` (HTTP 503) when there is none."""
        path = served_checkpoint(self.candidates)
        if path is None:
            raise self._missing()
        return path

    def model(self) -> tuple[TextDiffSeg, TextEncoder]:
        """The current model and its text encoder, (re)loaded if the served path or its mtime changed."""
        with self._lock:
            path = self.checkpoint()
            try:
                mtime = path.stat().st_mtime
            except FileNotFoundError as err:  # removed since checkpoint() looked
                raise self._missing() from err
            if self._model is None or self._loaded != (path, mtime):
                self._model = load_for_inference(path, self.options.text_encoder, self.options.device, self._encoders)
                self._fine_stage = load_fine_stage(path, self.options.device)
                self._loaded = (path, mtime)
                parameters = sum(p.numel() for p in self._model[0].parameters())
                logger.info("serving checkpoint %s (%s parameters)", path, parameters)
            return self._model

    def takes_clicks(self) -> bool:
        """Whether requests may carry clicks: click edits are on, or the served checkpoint has a click branch
        (``CheckpointError`` when there is no checkpoint).

        Read from the checkpoint's config, remembered per path and mtime, never through :meth:`model`: ``/info``
        asks this, and must not wait for the model lock that a running inference holds.
        """
        path = self.checkpoint()
        try:
            key = (path, path.stat().st_mtime)
        except FileNotFoundError as err:
            raise self._missing() from err
        if self.options.click_edits:
            return True
        known = self._clicks_known
        if known is None or known[0] != key:
            known = (key, read_config(path).click_channels > 0)
            self._clicks_known = known
        return known[1]

    def segment(
        self,
        image: MetaTensor,
        prompts: list[str],
        values: Sequence[int] | None = None,
        ensemble: int | None = None,
        steps: int | None = None,
        seed: int = 0,
        budgeted: bool = True,
        postprocess: bool = True,
        clicks: PromptClicks | None = None,
        fine_pass: bool = True,
    ) -> Prediction:
        """Segment ``prompts`` on ``image`` (channel-first HU ``MetaTensor``) on the image's own grid.

        ``values`` are the label map's value of each prompt (default 1..P); ``ensemble``/``steps`` override the
        options for this request. Raises ``ComputeBudgetError`` over ``options.max_denoiser_calls`` unless
        ``budgeted`` is false (work whose size the server's own settings fix, such as uncertainty scoring).
        ``postprocess`` cleans each mask by its anatomy (``textdiffseg.postprocess``). ``clicks``: per prompt, voxel
        indices of ``image`` (see :meth:`textdiffseg.inference.Segmenter.predict`; with click edits off, a model
        without a click branch refuses them with ``ClickError``). ``fine_pass``: run the checkpoint's zoom-in fine
        stage (if it has one and ``options.fine_pass``).
        """
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
                max_denoiser_calls=self.options.max_denoiser_calls if budgeted else None,
                vocabulary=self.options.vocabulary,
                postprocess=postprocess,
                fine_stage=self._fine_stage,
                fine_pass=fine_pass and self.options.fine_pass,
                click_edits=DEFAULT_CLICK_EDITS if self.options.click_edits else None,
            )
            with torch.inference_mode():
                return segmenter.predict(image, prompts, values, clicks)
