"""App settings, parsed once from the ``--conf key value`` pairs of ``monailabel start_server`` (all strings).

Knobs (``--conf <key> <value>``):

======================== ============================ ===============================================================
key                      default                      meaning
======================== ============================ ===============================================================
``text_encoder``         the checkpoint's encoder     text encoder to load (``default`` = packaged MiniLM, a local
                                                      BERT folder, or a cached Hugging Face name). It must be the one
                                                      the checkpoint was trained with; ``""``/``checkpoint`` = that.
``sampling_steps``       the checkpoint's value       DDIM steps per sample (``0`` = checkpoint default).
``ensemble``             ``1``                        diffusion samples per prompt for ``/infer`` (1-32).
``uncertainty_ensemble`` ``4``                        samples per prompt for ``/scoring/diffusion_uncertainty``.
``roi_size``             none                         accepted for compatibility (``[96,96,64]``) but **ignored**: the
                                                      sliding-window patch is fixed by the checkpoint the model was
                                                      trained with; a warning is logged when it is set.
``device``               ``cuda`` if available, else  ``cpu``, ``cuda`` or ``cuda:N``; ``cuda*`` falls back to ``cpu``
                         ``cpu``                      (with a warning) when no GPU is visible.
``use_pretrained_model`` ``true``                     serve ``model/pretrained_textdiffseg.pt`` (the shipped demo
                                                      checkpoint) while no trained ``model/textdiffseg.pt`` exists.
``labels``               built-in vocabulary          path of a prompt vocabulary JSON (``{"labels": [{"name",
                                                      "prompts"}]}``); its order fixes the served label indices.
``max_voxels``           64,000,000                   refuse volumes larger than this at the model spacing (HTTP 413).
``train_steps_per_epoch`` ``25``                      optimisation steps per requested training epoch.
``train_preset``         ``small``                    model size (``tiny``/``small``/``default``) when training starts
                                                      from scratch (no checkpoint to fine-tune, or
                                                      ``pretrained: false``).
``auto_update_scoring``  ``false``                    let MONAI Label re-run every scoring method after start-up,
                                                      each active-learning call and each training (on top of
                                                      ``MONAI_LABEL_AUTO_UPDATE_SCORING``); off by default because the
                                                      uncertainty scoring runs the model on every unlabeled image.
======================== ============================ ===============================================================

Other keys (MONAI Label's own, such as ``server_mode``) are ignored. A bad value raises ``ValueError`` with a one-line
message naming the key.

Model files (in ``<app>/model/``): training publishes ``textdiffseg.pt``; inference serves ``textdiffseg.pt`` when it
exists, else ``pretrained_textdiffseg.pt`` (when ``use_pretrained_model``), decided again at every request.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch

from textdiffseg.config import PRESETS
from textdiffseg.data.vocabulary import PromptVocabulary
from textdiffseg.inference import DEFAULT_MAX_VOXELS

logger = logging.getLogger(__name__)

MODEL_NAME = "textdiffseg"
PUBLISHED_MODEL = f"{MODEL_NAME}.pt"
PRETRAINED_MODEL = f"pretrained_{MODEL_NAME}.pt"
MAX_ENSEMBLE = 32
MAX_SAMPLING_STEPS = 1000
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")

T = TypeVar("T")


@dataclass(frozen=True)
class AppSettings:
    """Everything the app's tasks need from ``--conf``, typed and validated (see the module docstring)."""

    model_dir: Path
    vocabulary: PromptVocabulary
    text_encoder: str | None = None
    sampling_steps: int | None = None
    ensemble: int = 1
    uncertainty_ensemble: int = 4
    roi_size: tuple[int, int, int] | None = None
    device: str = "cpu"
    use_pretrained_model: bool = True
    labels: Path | None = None
    max_voxels: int = DEFAULT_MAX_VOXELS
    train_steps_per_epoch: int = 25
    train_preset: str = "small"
    auto_update_scoring: bool = False

    @property
    def published_model(self) -> Path:
        """Where training publishes its model (and what inference prefers)."""
        return self.model_dir / PUBLISHED_MODEL

    @property
    def pretrained_model(self) -> Path:
        """The shipped demo checkpoint."""
        return self.model_dir / PRETRAINED_MODEL

    def model_candidates(self) -> list[Path]:
        """Checkpoint paths in MONAI Label order: the last one that exists is served."""
        paths = [self.pretrained_model] if self.use_pretrained_model else []
        return [*paths, self.published_model]

    def current_model(self) -> Path | None:
        """The checkpoint to serve right now (trained one first), or ``None`` when there is none."""
        return next((p for p in reversed(self.model_candidates()) if p.is_file()), None)


class _Conf:
    """Reads typed values from the string conf, raising one-line ``ValueError``s that name the key."""

    def __init__(self, conf: Mapping[str, object]) -> None:
        self.conf = conf

    def raw(self, key: str) -> str | None:
        value = self.conf.get(key)
        if value is None:
            return None
        return str(value).strip()

    def get(self, key: str, default: T, parse: Callable[[str], T], expected: str) -> T:
        text = self.raw(key)
        if text is None or text == "":
            return default
        try:
            return parse(text)
        except (ValueError, TypeError):
            raise ValueError(f"conf '{key}': expected {expected}, got {text!r}") from None


def _int_in(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not lo <= value <= hi:
            raise ValueError(text)
        return value

    return parse


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(text)


def _roi(text: str) -> tuple[int, int, int]:
    parsed = json.loads(text) if text.startswith("[") else [int(t) for t in text.split(",")]
    if not isinstance(parsed, list) or len(parsed) != 3:
        raise ValueError(text)
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in parsed):
        raise ValueError(text)
    return (parsed[0], parsed[1], parsed[2])


def _device(text: str) -> str:
    if not _DEVICE.match(text):
        raise ValueError(text)
    if text.startswith("cuda") and not torch.cuda.is_available():
        logger.warning("conf 'device' is %s but no GPU is visible; running on cpu", text)
        return "cpu"
    return text


def _preset(text: str) -> str:
    if text not in PRESETS:
        raise ValueError(text)
    return text


def _vocabulary(path: Path | None) -> PromptVocabulary:
    try:
        return PromptVocabulary.load(path)
    except ValueError as err:
        raise ValueError(f"conf 'labels': {err}") from err


def parse_conf(conf: Mapping[str, object] | None, app_dir: str | Path) -> AppSettings:
    """Build :class:`AppSettings` from the ``--conf`` dict; raise ``ValueError`` naming the first bad key."""
    c = _Conf(conf or {})
    text_encoder = c.raw("text_encoder")
    labels_text = c.raw("labels")
    labels = Path(labels_text).expanduser().resolve() if labels_text else None
    if labels is not None and not labels.is_file():
        raise ValueError(f"conf 'labels': no prompt vocabulary file at {labels}")
    steps = c.get("sampling_steps", 0, _int_in(0, MAX_SAMPLING_STEPS), f"an integer from 0 to {MAX_SAMPLING_STEPS}")
    settings = AppSettings(
        model_dir=Path(app_dir).resolve() / "model",
        vocabulary=_vocabulary(labels),
        text_encoder=None if text_encoder in (None, "", "checkpoint") else text_encoder,
        sampling_steps=steps or None,
        ensemble=c.get("ensemble", 1, _int_in(1, MAX_ENSEMBLE), f"an integer from 1 to {MAX_ENSEMBLE}"),
        uncertainty_ensemble=c.get(
            "uncertainty_ensemble", 4, _int_in(1, MAX_ENSEMBLE), f"an integer from 1 to {MAX_ENSEMBLE}"
        ),
        roi_size=c.get("roi_size", None, _roi, "three positive integers such as [96,96,64]"),
        device=c.get("device", "cuda" if torch.cuda.is_available() else "cpu", _device, "cpu, cuda or cuda:N"),
        use_pretrained_model=c.get("use_pretrained_model", True, _bool, "true or false"),
        labels=labels,
        max_voxels=c.get("max_voxels", DEFAULT_MAX_VOXELS, _int_in(1, 2**40), "a positive integer"),
        train_steps_per_epoch=c.get("train_steps_per_epoch", 25, _int_in(1, 10**6), "a positive integer"),
        train_preset=c.get("train_preset", "small", _preset, f"one of {sorted(PRESETS)}"),
        auto_update_scoring=c.get("auto_update_scoring", False, _bool, "true or false"),
    )
    if settings.roi_size is not None:
        logger.warning("conf 'roi_size' is ignored: the sliding-window patch size is fixed by the checkpoint")
    return settings
