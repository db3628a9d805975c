"""Read a ``/train/textdiffseg`` request (the trainer's config defaults merged with what the client sent).

Clients send config entries back as shown (3D Slicer collapses lists to their first element, OHIF sends the selected
option), so every value may arrive as a string, a number, or a one-element list; ``""`` means the default. Values are
read with ``textdiffseg.params.ParamReader``; errors are one-line ``ValueError``s naming the key. A run may take at
most ``--conf max_train_steps`` optimisation steps (``max_epochs`` x ``train_steps_per_epoch``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from lib.configs.textdiffseg import MAX_EPOCHS, MAX_STEPS_PER_EPOCH, parse_device
from textdiffseg.finetune import Recipe
from textdiffseg.params import ParamReader

MAX_MINUTES = 24 * 60
TUNE_CHOICES = ("auto", "prompts", "all")
RECIPE = Recipe()

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


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
    max_minutes: float = RECIPE.max_minutes  # the run stops after this much training time
    augment: bool = RECIPE.augment
    foreground_fraction: float = RECIPE.foreground_fraction
    rehearsal: bool = True  # mix in phantoms of the structures the served model knows
    tune: str = "auto"  # "auto", "prompts" (learned prompts of new structures, network frozen) or "all"
    prompt_learning_rate: float = RECIPE.prompt_lr  # peak learning rate of the learned prompts (tune "prompts")

    @property
    def steps(self) -> int:
        """Optimisation steps in total."""
        return self.max_epochs * self.steps_per_epoch


def _name(value: object) -> str:
    name = str(value)
    if not _NAME.match(name) or ".." in name:
        raise ValueError(name)
    return name


def parse_train_params(
    req: Mapping[str, object], default_steps_per_epoch: int, default_device: str, max_train_steps: int
) -> TrainParams:
    """Validate a train request; raises ``ValueError`` naming the bad key (or both numbers over the step limit)."""
    read = ParamReader(req, "train request", ValueError, first_of_list=True)
    params = TrainParams(
        name=read.get("name", "train_01", _name, "a folder name (letters, digits, _ . -)"),
        pretrained=read.flag("pretrained", True),
        max_epochs=read.integer("max_epochs", 2, 1, MAX_EPOCHS),
        steps_per_epoch=read.integer("train_steps_per_epoch", default_steps_per_epoch, 1, MAX_STEPS_PER_EPOCH),
        learning_rate=read.number("learning_rate", RECIPE.lr, 0.0, 1.0),
        device=read.get("device", default_device, parse_device, "cpu, cuda or cuda:N"),
        multi_gpu=read.flag("multi_gpu", False),
        tracking=read.text("tracking", "None"),
        max_minutes=read.number("max_minutes", RECIPE.max_minutes, 0.0, MAX_MINUTES + 1e-9),
        augment=read.flag("augment", RECIPE.augment),
        foreground_fraction=read.number("foreground_fraction", RECIPE.foreground_fraction, -1e-9, 1.0 + 1e-9),
        rehearsal=read.flag("rehearsal", True),
        tune=read.choice("tune", "auto", TUNE_CHOICES),
        prompt_learning_rate=read.number("prompt_learning_rate", RECIPE.prompt_lr, 0.0, 1.0),
    )
    if params.steps > max_train_steps:
        raise ValueError(
            f"train request: max_epochs {params.max_epochs} x train_steps_per_epoch {params.steps_per_epoch} = "
            f"{params.steps:,} steps, over the limit of {max_train_steps:,} (conf 'max_train_steps')"
        )
    return params
