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
``uncertainty_prompts``  every structure the served   the prompts ``/scoring/diffusion_uncertainty`` ranks images by,
                         model was trained on         separated by ``;`` (``pancreas;pancreas tumor`` for a pancreas
                                                      labelling campaign): the images whose *those* structures the
                                                      model is least sure of come first, and scoring takes one
                                                      prompt's time instead of 23.
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
``max_denoiser_calls``   2,000                        per-request compute budget of ``/infer``: prompts x ensemble x
                                                      sampling steps x sliding windows (at the model spacing); over
                                                      it is an HTTP 413 naming each factor. With the demo checkpoint
                                                      one prompt on an abdomen needs 60 (43 s on 2 loaded cores),
                                                      16 prompts on a whole body 1,920; 16 prompts x ensemble 32
                                                      (2,560 on one window) is refused. Memory is bounded apart:
                                                      at most 64 samples are denoised at once
                                                      (``inference.MAX_SAMPLES_PER_WINDOW``).
``train_steps_per_epoch`` ``25``                      optimisation steps per requested training epoch (at most
                                                      100,000).
``max_train_steps``      20,000                       refuse ``/train`` requests whose ``max_epochs`` x
                                                      ``train_steps_per_epoch`` exceeds this (``max_epochs`` is at
                                                      most 1000).
``train_preset``         ``small``                    model size (a ``config.PRESETS`` name) when training starts
                                                      from scratch (no checkpoint to fine-tune, or
                                                      ``pretrained: false``).
``auto_update_scoring``  ``false``                    let MONAI Label re-run every scoring method after start-up,
                                                      each active-learning call and each training (on top of
                                                      ``MONAI_LABEL_AUTO_UPDATE_SCORING``); off by default because the
                                                      uncertainty scoring runs the model on every unlabeled image.
``publish_tolerance``    ``0.02``                     ``/train`` publishes its model only if no structure the served
                                                      model knew drops by more than this Dice on the validation share
                                                      or the phantom regression set (``textdiffseg.publish_gate``);
                                                      else the served model is kept and ``train_stats`` says why.
``publish_gate``         ``true``                     ``false``: publish every finished ``/train`` run without
                                                      scoring it (MONAI Label's own behaviour), for a site that means
                                                      to change what a structure it corrects looks like, or to save
                                                      the gate's minutes; ``train_stats`` and the log say the gate
                                                      was off.
``fine_pass``            ``true``                     zoom in: when the checkpoint holds a fine stage, each prompt it
                                                      was trained on is segmented again at 1.5 mm in-plane over the
                                                      region the 5 mm coarse pass found (``textdiffseg.zoom_in``);
                                                      ``false``: the coarse pass only. A request's ``fine_pass``
                                                      can turn it off for that request.
``click_edits``          ``true``                     each click adds (foreground) or removes (background) its
                                                      intensity region within 20 mm, after the model
                                                      (``textdiffseg.click_edit``), so every checkpoint takes
                                                      clicks; ``false``: only a checkpoint with a click branch does.
``rehearsal_data``       ``datasets/realct`` of the    a dataset folder (MSD style, ``dataset.json``) of the real CT
                         repository, when there       the served model was trained on: ``/train`` mixes its cases
                                                      into every fine-tuning run, prompted only with structures the
                                                      model knows, so it keeps them (``textdiffseg.finetune``);
                                                      ``none``: no real-CT rehearsal.
``anonymous_admin``      ``false``                    allow admin operations (training, scoring, model upload and
                                                      delete, ``/reload``, ``/logs``) without auth: a trusted
                                                      single-user machine only (read by ``textdiffseg_server.policy``;
                                                      see SECURITY.md).
======================== ============================ ===============================================================

Other keys (MONAI Label's own, such as ``server_mode``) are ignored. Values are read with
``textdiffseg.params.ParamReader`` (the same words and ranges as the requests); ``""`` means the default, and a bad
value raises ``ValueError`` with a one-line message naming the key.

Model files (in ``<app>/model/``): training publishes ``textdiffseg.pt``; inference serves ``textdiffseg.pt`` when it
exists, else ``pretrained_textdiffseg.pt`` (when ``use_pretrained_model``), decided again at every request.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from textdiffseg.config import PRESETS
from textdiffseg.data.vocabulary import PromptVocabulary
from textdiffseg.inference import DEFAULT_MAX_DENOISER_CALLS, DEFAULT_MAX_VOXELS
from textdiffseg.params import ParamReader
from textdiffseg.publish_gate import DEFAULT_TOLERANCE
from textdiffseg.service import SegmentationService, ServiceOptions, served_checkpoint

logger = logging.getLogger(__name__)

MODEL_NAME = "textdiffseg"
RAW_VOXELS_PER_BUDGET_VOXEL = 5
PUBLISHED_MODEL = f"{MODEL_NAME}.pt"
PRETRAINED_MODEL = f"pretrained_{MODEL_NAME}.pt"
MAX_ENSEMBLE = 32
MAX_SAMPLING_STEPS = 1000
MAX_EPOCHS = 1000
MAX_STEPS_PER_EPOCH = 100_000
DEFAULT_MAX_TRAIN_STEPS = 20_000
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class AppSettings:
    """Everything the app's tasks need from ``--conf``, typed and validated (see the module docstring)."""

    model_dir: Path
    vocabulary: PromptVocabulary
    text_encoder: str | None = None
    sampling_steps: int | None = None
    ensemble: int = 1
    uncertainty_ensemble: int = 4
    uncertainty_prompts: tuple[str, ...] = ()  # () = every structure the served model was trained on
    roi_size: tuple[int, int, int] | None = None
    device: str = "cpu"
    use_pretrained_model: bool = True
    labels: Path | None = None
    max_voxels: int = DEFAULT_MAX_VOXELS
    max_denoiser_calls: int = DEFAULT_MAX_DENOISER_CALLS
    train_steps_per_epoch: int = 25
    max_train_steps: int = DEFAULT_MAX_TRAIN_STEPS
    train_preset: str = "small"
    auto_update_scoring: bool = False
    anonymous_admin: bool = False
    publish_tolerance: float = DEFAULT_TOLERANCE
    publish_gate: bool = True  # False: every finished /train run is published unscored
    fine_pass: bool = True  # zoom-in fine pass when the checkpoint has a fine stage
    click_edits: bool = True  # clicks edit masks by their intensity region (textdiffseg.click_edit)
    rehearsal_data: Path | None = None  # real CT the served model was trained on, rehearsed by /train

    @property
    def max_file_voxels(self) -> int:
        """The most int16-equivalent voxels one image file may hold (checked from its header before loading).

        :data:`RAW_VOXELS_PER_BUDGET_VOXEL` times ``max_voxels``: the budget counts voxels at the model spacing and
        CTs are often finer (64 M -> 320 M int16 voxels, 512x512x1220, about 1.9 GiB once loaded).
        """
        return self.max_voxels * RAW_VOXELS_PER_BUDGET_VOXEL

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
        return served_checkpoint(self.model_candidates())


def _roi(value: object) -> tuple[int, int, int]:
    text = str(value)
    parsed = json.loads(text) if text.startswith("[") else [int(t) for t in text.split(",")]
    if not isinstance(parsed, list) or len(parsed) != 3:
        raise ValueError(text)
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in parsed):
        raise ValueError(text)
    return (parsed[0], parsed[1], parsed[2])


def parse_device(value: object) -> str:
    """``cpu``, ``cuda`` or ``cuda:N``; ``cuda*`` becomes ``cpu`` (with a warning) when no GPU is visible."""
    text = str(value)
    if not _DEVICE.match(text):
        raise ValueError(text)
    if text.startswith("cuda") and not torch.cuda.is_available():
        logger.warning("device %s requested but no GPU is visible; running on cpu", text)
        return "cpu"
    return text


def _vocabulary(path: Path | None) -> PromptVocabulary:
    try:
        return PromptVocabulary.load(path)
    except ValueError as err:
        raise ValueError(f"conf 'labels': {err}") from err


def _rehearsal_data(value: str | None, app_dir: Path) -> Path | None:
    """The real-CT rehearsal folder: the given one (it must hold a ``dataset.json``), ``none``, or by default the
    repository's ``datasets/realct`` when the app sits in a checkout that has fetched it."""
    if value and value.lower() == "none":
        return None
    if not value:
        parents = app_dir.resolve().parents  # <checkout>/apps/<app>
        default = parents[1] / "datasets" / "realct" if len(parents) > 1 else None
        return default if default is not None and (default / "dataset.json").is_file() else None
    folder = Path(value).expanduser().resolve()
    if not (folder / "dataset.json").is_file():
        raise ValueError(f"conf 'rehearsal_data': no dataset.json in {folder}")
    return folder


def _prompt_list(value: str | None) -> tuple[str, ...]:
    """``a;b;c`` -> ``("a", "b", "c")`` (blank items dropped); ``None`` or blank -> ``()``."""
    return tuple(item.strip() for item in (value or "").split(";") if item.strip())


def parse_conf(conf: Mapping[str, object] | None, app_dir: str | Path) -> AppSettings:
    """Build :class:`AppSettings` from the ``--conf`` dict; raise ``ValueError`` naming the first bad key."""
    c = ParamReader(conf, "conf")
    text_encoder = c.text("text_encoder", None)
    labels_text = c.text("labels", None)
    labels = Path(labels_text).expanduser().resolve() if labels_text else None
    if labels is not None and not labels.is_file():
        raise ValueError(f"conf 'labels': no prompt vocabulary file at {labels}")
    settings = AppSettings(
        model_dir=Path(app_dir).resolve() / "model",
        vocabulary=_vocabulary(labels),
        text_encoder=None if text_encoder in (None, "checkpoint") else text_encoder,
        sampling_steps=c.integer("sampling_steps", 0, 0, MAX_SAMPLING_STEPS) or None,
        ensemble=c.integer("ensemble", 1, 1, MAX_ENSEMBLE),
        uncertainty_ensemble=c.integer("uncertainty_ensemble", 4, 1, MAX_ENSEMBLE),
        uncertainty_prompts=_prompt_list(c.text("uncertainty_prompts", None)),
        roi_size=c.get("roi_size", None, _roi, "three positive integers such as [96,96,64]"),
        device=c.get("device", "cuda" if torch.cuda.is_available() else "cpu", parse_device, "cpu, cuda or cuda:N"),
        use_pretrained_model=c.flag("use_pretrained_model", True),
        labels=labels,
        max_voxels=c.integer("max_voxels", DEFAULT_MAX_VOXELS, 1, 2**40),
        max_denoiser_calls=c.integer("max_denoiser_calls", DEFAULT_MAX_DENOISER_CALLS, 1),
        train_steps_per_epoch=c.integer("train_steps_per_epoch", 25, 1, MAX_STEPS_PER_EPOCH),
        max_train_steps=c.integer("max_train_steps", DEFAULT_MAX_TRAIN_STEPS, 1),
        train_preset=c.choice("train_preset", "small", PRESETS),
        auto_update_scoring=c.flag("auto_update_scoring", False),
        anonymous_admin=c.flag("anonymous_admin", False),
        publish_tolerance=c.number("publish_tolerance", DEFAULT_TOLERANCE, -1e-9, 1.0 + 1e-9),
        publish_gate=c.flag("publish_gate", True),
        fine_pass=c.flag("fine_pass", True),
        click_edits=c.flag("click_edits", True),
        rehearsal_data=_rehearsal_data(c.text("rehearsal_data", None), Path(app_dir)),
    )
    if settings.roi_size is not None:
        logger.warning("conf 'roi_size' is ignored: the sliding-window patch size is fixed by the checkpoint")
    return settings


def build_service(settings: AppSettings) -> SegmentationService:
    """The app's one segmentation service (``/infer`` and scoring share it), following the served checkpoint."""
    return SegmentationService(
        settings.model_candidates(),
        ServiceOptions(
            text_encoder=settings.text_encoder,
            steps=settings.sampling_steps,
            ensemble=settings.ensemble,
            device=settings.device,
            max_voxels=settings.max_voxels,
            max_denoiser_calls=settings.max_denoiser_calls,
            how_to_train=f"train one (POST /train/{MODEL_NAME})",
            vocabulary=settings.vocabulary,
            fine_pass=settings.fine_pass,
            click_edits=settings.click_edits,
        ),
    )
