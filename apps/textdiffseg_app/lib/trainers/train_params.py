"""Read a ``/train/textdiffseg`` request (the trainer's config defaults merged with what the client sent).

Clients send config entries back as shown (3D Slicer collapses lists to their first element, OHIF sends the selected
option), so every value may arrive as a string, a number, or a one-element list.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", "", "none"}


@dataclass(frozen=True)
class TrainParams:
    """What one training run does."""

    name: str  # run folder under model/textdiffseg/
    pretrained: bool  # fine-tune the served checkpoint (False: new model of the conf's train_preset)
    max_epochs: int
    steps_per_epoch: int
    learning_rate: float
    device: str
    multi_gpu: bool
    tracking: str  # accepted for client compatibility; this trainer logs to history.jsonl only

    @property
    def steps(self) -> int:
        """Optimisation steps in total."""
        return self.max_epochs * self.steps_per_epoch


def _first(value: object) -> object:
    return value[0] if isinstance(value, list | tuple) and value else value


def _int(req: Mapping[str, object], key: str, default: int, hi: int) -> int:
    value = _first(req.get(key, default))
    if value in (None, ""):
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"train request '{key}': expected an integer from 1 to {hi}, got {value!r}")
    try:
        number = int(value)
    except ValueError as err:
        raise ValueError(f"train request '{key}': expected an integer from 1 to {hi}, got {value!r}") from err
    if not 1 <= number <= hi:
        raise ValueError(f"train request '{key}': expected an integer from 1 to {hi}, got {number}")
    return number


def _bool(req: Mapping[str, object], key: str, default: bool) -> bool:
    value = _first(req.get(key, default))
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise ValueError(f"train request '{key}': expected true or false, got {value!r}")


def _float(req: Mapping[str, object], key: str, default: float) -> float:
    value = _first(req.get(key, default))
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as err:
        raise ValueError(f"train request '{key}': expected a positive number, got {value!r}") from err
    if not 0.0 < number < 1.0:
        raise ValueError(f"train request '{key}': expected a number between 0 and 1, got {number}")
    return number


def _device(req: Mapping[str, object], default: str) -> str:
    value = str(_first(req.get("device")) or default)
    if not re.match(r"^(cpu|cuda(:\d+)?)$", value):
        raise ValueError(f"train request 'device': expected cpu, cuda or cuda:N, got {value!r}")
    return value if value == "cpu" or torch.cuda.is_available() else "cpu"


def parse_train_params(req: Mapping[str, object], default_steps_per_epoch: int, default_device: str) -> TrainParams:
    """Validate a train request; raises ``ValueError`` naming the bad key."""
    name = str(_first(req.get("name")) or "train_01")
    if not _NAME.match(name) or ".." in name:
        raise ValueError(f"train request 'name': expected a folder name (letters, digits, _ . -), got {name!r}")
    return TrainParams(
        name=name,
        pretrained=_bool(req, "pretrained", True),
        max_epochs=_int(req, "max_epochs", 2, 10_000),
        steps_per_epoch=_int(req, "train_steps_per_epoch", default_steps_per_epoch, 10**6),
        learning_rate=_float(req, "learning_rate", 1e-4),
        device=_device(req, default_device),
        multi_gpu=_bool(req, "multi_gpu", False),
        tracking=str(_first(req.get("tracking")) or "None"),
    )
