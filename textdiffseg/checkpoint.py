"""Checkpoints: config + weights (+ optional training state), written atomically, read with ``weights_only=True``.

:func:`load_for_inference` is the one loader for serving, evaluation and benchmarks (as diffusers'
``from_pretrained``): it reads the file once, builds the text encoder the checkpoint records (or the one given),
validates it against the checkpoint once and returns both. :func:`load_checkpoint` also returns the training state
(for resuming and fine-tuning).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from textdiffseg.atomic_files import torch_save_atomic
from textdiffseg.config import ModelConfig
from textdiffseg.networks.model import TextDiffSeg
from textdiffseg.text.encoder import TextEncoder

FORMAT = "textdiffseg-checkpoint-v1"


class CheckpointError(RuntimeError):
    """A checkpoint is unreadable, of another format, or was trained with another text encoder."""


def _weights(model: TextDiffSeg) -> dict[str, Any]:
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return {"config": model.config.to_json(), "state_dict": weights}


def save_checkpoint(
    path: str | Path,
    model: TextDiffSeg,
    extra: dict[str, Any] | None = None,
    fine_stage: TextDiffSeg | None = None,
) -> Path:
    """Save a model's config and weights (and ``extra`` training state: plain containers and tensors only), with
    its zoom-in ``fine_stage`` (``textdiffseg.fine_stage``) when it has one."""
    payload: dict[str, Any] = {"format": FORMAT, **_weights(model)}
    if extra:
        payload["extra"] = extra
    if fine_stage is not None:
        payload["fine_stage"] = _weights(fine_stage)
    return torch_save_atomic(payload, path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load the raw payload safely (``weights_only=True``) and check its format."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise CheckpointError(f"checkpoint {path} does not exist") from err
    except Exception as err:  # torch raises many types for corrupt files; report them all the same way
        raise CheckpointError(f"checkpoint {path} cannot be read: {type(err).__name__}: {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a TextDiffSeg checkpoint (format {FORMAT})")
    return payload


def _config(payload: dict[str, Any], path: str | Path) -> ModelConfig:
    try:
        return ModelConfig.from_json(payload["config"])
    except (KeyError, ValueError, TypeError) as err:
        raise CheckpointError(f"checkpoint {path} has an unreadable config: {err}") from err


def read_config(path: str | Path) -> ModelConfig:
    """The model config a checkpoint records (e.g. its text encoder), without building the model."""
    return _config(read_checkpoint(path), path)


def check_text_encoder(config: ModelConfig, encoder: TextEncoder, source: str = "checkpoint") -> None:
    """Refuse an encoder other than the one the model was trained with, with a message saying which to use."""
    if encoder.hidden_size != config.text_hidden_size or (
        config.text_fingerprint and encoder.fingerprint != config.text_fingerprint
    ):
        raise CheckpointError(
            f"{source} was trained with text encoder {config.text_encoder!r} (hidden size {config.text_hidden_size}, "
            f"fingerprint {config.text_fingerprint or 'n/a'}), but {encoder.name!r} "
            f"(hidden size {encoder.hidden_size}, "
            f"fingerprint {encoder.fingerprint}) was given; load it with text_encoder={config.text_encoder!r} "
            "or retrain with the new encoder"
        )


def _model(config: ModelConfig, payload: dict[str, Any]) -> TextDiffSeg:
    model = TextDiffSeg(config)
    model.load_state_dict(payload["state_dict"])
    return model.eval()


def rewrite_config(src: str | Path, dst: str | Path, **changes: Any) -> Path:
    """Copy a checkpoint with ``changes`` made to its model's config (and its fine stage's, when it has one), every
    weight and the training state as they were: for settings that need no training, such as how it samples.

    Raises:
        CheckpointError: ``src`` is unreadable, or a change names no config field or makes the config invalid.
    """
    payload = read_checkpoint(src)
    parts = [payload] + ([payload["fine_stage"]] if isinstance(payload.get("fine_stage"), dict) else [])
    for part in parts:
        try:
            config = replace(_config(part, src), **changes)
            config.validate()
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"cannot set {sorted(changes)} in {src}: {err}") from err
        part["config"] = config.to_json()
    return torch_save_atomic(payload, dst)


def load_checkpoint(path: str | Path, encoder: TextEncoder | None = None) -> tuple[TextDiffSeg, dict[str, Any]]:
    """The model and its training state; a given ``encoder`` must be the one the model was trained with."""
    payload = read_checkpoint(path)
    config = _config(payload, path)
    if encoder is not None:
        check_text_encoder(config, encoder, source=f"checkpoint {Path(path).name}")
    return _model(config, payload), payload.get("extra", {})


def load_fine_stage(path: str | Path, device: str | torch.device = "cpu") -> TextDiffSeg | None:
    """The zoom-in fine stage a checkpoint holds, or ``None`` (whole-CT inference only)."""
    stored = read_checkpoint(path).get("fine_stage")
    if not isinstance(stored, dict):
        return None
    return _model(_config(stored, path), stored).to(device)


def load_for_inference(
    path: str | Path,
    text_encoder: str | None = None,
    device: str | torch.device = "cpu",
    encoder_cache: MutableMapping[str, TextEncoder] | None = None,
) -> tuple[TextDiffSeg, TextEncoder]:
    """The model of a checkpoint and its text encoder, ready for :class:`textdiffseg.inference.Segmenter`.

    Args:
        path: the checkpoint.
        text_encoder: where to load the text encoder from; ``None`` = the name the checkpoint records.
        device: where the model and the encoder run.
        encoder_cache: encoders already loaded, by name; a long-lived caller (the service) passes one so that a
            reloaded checkpoint reuses its encoder (and the encoder's prompt-embedding cache).

    Raises:
        CheckpointError: unreadable checkpoint, or an encoder other than the one the model was trained with.
        TextEncoderError: the encoder cannot be loaded.
    """
    payload = read_checkpoint(path)
    config = _config(payload, path)
    name = text_encoder or config.text_encoder
    cache = encoder_cache if encoder_cache is not None else {}
    if name not in cache:
        cache[name] = TextEncoder(name, device=str(device))
    check_text_encoder(config, cache[name], source=f"checkpoint {Path(path).name}")
    return _model(config, payload).to(device), cache[name]
