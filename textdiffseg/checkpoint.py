"""Checkpoints: config + weights (+ optional training state), written atomically, read with ``weights_only=True``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from textdiffseg.config import ModelConfig
from textdiffseg.networks.model import TextDiffSeg
from textdiffseg.text.encoder import TextEncoder

FORMAT = "textdiffseg-checkpoint-v1"


class CheckpointError(RuntimeError):
    """A checkpoint is unreadable, of another format, or was trained with another text encoder."""


def save_atomic(obj: dict[str, Any], path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``.

    Readers see either the old file or the new one, never a partial write (a SIGKILL mid-save leaves the old one).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_checkpoint(path: str | Path, model: TextDiffSeg, extra: dict[str, Any] | None = None) -> Path:
    """Save a model's config and weights (and ``extra`` training state: plain containers and tensors only)."""
    payload: dict[str, Any] = {
        "format": FORMAT,
        "config": model.config.to_json(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    if extra:
        payload["extra"] = extra
    return save_atomic(payload, path)


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


def load_checkpoint(path: str | Path, encoder: TextEncoder | None = None) -> tuple[TextDiffSeg, dict[str, Any]]:
    """Rebuild the model from a checkpoint; if ``encoder`` is given it must be the one the model was trained with."""
    payload = read_checkpoint(path)
    try:
        config = ModelConfig.from_json(payload["config"])
    except (KeyError, ValueError, TypeError) as err:
        raise CheckpointError(f"checkpoint {path} has an unreadable config: {err}") from err
    if encoder is not None:
        check_text_encoder(config, encoder, source=f"checkpoint {Path(path).name}")
    model = TextDiffSeg(config)
    model.load_state_dict(payload["state_dict"])
    return model.eval(), payload.get("extra", {})
