"""What one ``/train`` run trains on and is validated with (``textdiffseg.finetune``'s recipe on the datastore).

The site's labelled cases are split into a training and a validation share; when fine-tuning a checkpoint with
``rehearsal``, phantoms of the structures it records as trained are mixed into the training cases (generated once
into ``model/textdiffseg/phantoms/``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from textdiffseg.checkpoint import read_config
from textdiffseg.data.folders import LabelledCase
from textdiffseg.finetune import (
    REHEARSAL_CASES,
    REHEARSAL_SEED,
    Recipe,
    known_phantom_cases,
    mixed_weights,
    phantom_set,
    split_validation,
)
from textdiffseg.prompt_match import trained_structures

logger = logging.getLogger(__name__)


@dataclass
class RunPlan:
    """The cases of one run."""

    train: list[LabelledCase]  # the site's training share, then the rehearsal phantoms
    weights: list[float] | None  # sampling weight per training case (None: alike)
    validation: list[LabelledCase]  # the site's held-out share (may be empty)
    known: tuple[str, ...] = ()  # structures the starting checkpoint records as trained (none for a new model)
    site_cases: int = 0
    rehearsal_cases: int = 0
    notes: list[str] = field(default_factory=list)

    def as_stats(self) -> dict[str, object]:
        """Entries for ``train_stats``."""
        return {
            "train_cases": self.site_cases,
            "validation_cases": [c.case_id for c in self.validation],
            "rehearsal_cases": self.rehearsal_cases,
        }


def plan_run(
    cases: list[LabelledCase], init_from: Path | None, rehearsal: bool, phantom_dir: Path, recipe: Recipe
) -> RunPlan:
    """Split the site's cases and add the rehearsal phantoms (only when fine-tuning a checkpoint)."""
    train, validation = split_validation(cases, recipe.validation_fraction)
    known = trained_structures(read_config(init_from)) if init_from is not None else ()
    extra: list[LabelledCase] = []
    if rehearsal and known:
        folder = phantom_set(phantom_dir / f"rehearsal_{REHEARSAL_SEED}", REHEARSAL_SEED, REHEARSAL_CASES)
        extra = known_phantom_cases(folder, known)
        if not extra:
            logger.info("no rehearsal: the phantoms draw none of the %d structures the model knows", len(known))
    plan = RunPlan(
        train=train + extra,
        weights=mixed_weights(len(train), len(extra), recipe.rehearsal_share),
        validation=validation,
        known=tuple(known),
        site_cases=len(train),
        rehearsal_cases=len(extra),
    )
    logger.info(
        "training on %d labelled image(s) + %d rehearsal phantom(s) (%.0f%% of the patches); validating on %s",
        len(train),
        len(extra),
        100 * recipe.rehearsal_share if extra else 0,
        ", ".join(c.case_id for c in validation) or "nothing (fewer than two labelled images)",
    )
    return plan
