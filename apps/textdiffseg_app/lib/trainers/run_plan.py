"""What one ``/train`` run trains on and is validated with (``textdiffseg.finetune``'s recipe on the datastore).

The site's labelled cases are split into a training and a validation share; when fine-tuning a checkpoint with
``rehearsal``, three kinds of rehearsal cases of the structures it records as trained are mixed into the training
cases: phantoms (generated once into ``model/textdiffseg/phantoms/``), the real CT the served model was trained on
(``--conf rehearsal_data``, when at hand) and the site's own training images with the served model's masks as
targets (written into the run folder, ``teacher/``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from textdiffseg.checkpoint import read_config
from textdiffseg.data.folders import LabelledCase
from textdiffseg.data.vocabulary import PromptVocabulary
from textdiffseg.finetune import (
    REHEARSAL_CASES,
    REHEARSAL_SEED,
    Recipe,
    known_cases,
    mixed_weights,
    phantom_set,
    split_validation,
)
from textdiffseg.prompt_match import trained_structures
from textdiffseg.self_distillation import teacher_cases

logger = logging.getLogger(__name__)


@dataclass
class RunPlan:
    """The cases of one run."""

    train: list[LabelledCase]  # the site's training share, then the phantoms, the real CT and the teacher cases
    weights: list[float] | None  # sampling weight per training case (None: alike)
    validation: list[LabelledCase]  # the site's held-out share (may be empty)
    known: tuple[str, ...] = ()  # structures the starting checkpoint records as trained (none for a new model)
    site_cases: int = 0
    rehearsal_cases: int = 0
    real_cases: int = 0
    teacher_cases: int = 0
    tune: str = "all"  # what the run trains: "all" (every weight) or "prompts" (learned prompts of new structures)
    structures: tuple[str, ...] = ()  # the structures it is limited to (tune "prompts": the new ones)
    notes: list[str] = field(default_factory=list)

    def as_stats(self) -> dict[str, object]:
        """Entries for ``train_stats``."""
        return {
            "train_cases": self.site_cases,
            "validation_cases": [c.case_id for c in self.validation],
            "rehearsal_cases": self.rehearsal_cases,
            "real_rehearsal_cases": self.real_cases,
            "teacher_cases": self.teacher_cases,
            "tune": self.tune,
            **({"learned_prompts": list(self.structures)} if self.tune == "prompts" else {}),
        }


def choose_tune(requested: str, cases: list[LabelledCase], known: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """What a run trains, and the structures it is limited to.

    ``auto`` teaches with learned prompts (``textdiffseg.prompt_tuning``: the network frozen, every answer the
    served model gave stays exactly as it was) when every structure the site labelled is new to the served model,
    and trains every weight otherwise (a site correcting a structure the model knows needs the network to change).
    ``prompts`` and ``all`` are taken as asked; ``prompts`` with nothing new to learn is a ``ValueError``.
    """
    labelled = list(dict.fromkeys(name for case in cases for name in sorted(case.targets)))
    new = tuple(name for name in labelled if name not in known)
    if requested == "auto":
        requested = "prompts" if known and new and len(new) == len(labelled) else "all"
    if requested == "prompts":
        if not known:
            raise ValueError("train request: tune 'prompts' teaches the served model new structures; none is served")
        if not new:
            raise ValueError(
                f"train request: tune 'prompts': the served model already knows every labelled structure "
                f"({', '.join(labelled)}); correcting them needs tune 'all'"
            )
        return "prompts", new
    return "all", ()


def plan_run(
    cases: list[LabelledCase],
    init_from: Path | None,
    rehearsal: bool,
    phantom_dir: Path,
    recipe: Recipe,
    teacher_dir: Path | None = None,
    real_dir: Path | None = None,
    device: str = "cpu",
    vocabulary: PromptVocabulary | None = None,
    tune: str = "all",
) -> RunPlan:
    """Split the site's cases and add the rehearsal cases (only when fine-tuning every weight of a checkpoint):
    phantoms, the cases of ``real_dir`` (a dataset folder), and, with ``teacher_dir``, the served model's masks on
    the site's training images. ``tune`` is the request's (:func:`choose_tune`); a run that trains learned prompts
    only has nothing to rehearse (the network is frozen)."""
    train, validation = split_validation(cases, recipe.validation_fraction)
    known = trained_structures(read_config(init_from)) if init_from is not None else ()
    tune, structures = choose_tune(tune, cases, tuple(known))
    if tune == "prompts":
        logger.info(
            "teaching %s with learned prompts on %d labelled image(s), the network frozen; validating on %s",
            ", ".join(structures),
            len(train),
            ", ".join(c.case_id for c in validation) or "nothing (fewer than two labelled images)",
        )
        return RunPlan(train, None, validation, tuple(known), site_cases=len(train), tune=tune, structures=structures)
    phantoms: list[LabelledCase] = []
    real: list[LabelledCase] = []
    teacher: list[LabelledCase] = []
    if rehearsal and known:
        folder = phantom_set(phantom_dir / f"rehearsal_{REHEARSAL_SEED}", REHEARSAL_SEED, REHEARSAL_CASES)
        phantoms = known_cases(folder, known, id_suffix="")
        if not phantoms:
            logger.info("no phantom rehearsal: the phantoms draw none of the %d structures the model knows", len(known))
        if real_dir is not None:
            real = known_cases(real_dir, known)
        if teacher_dir is not None and init_from is not None:
            site = train[: recipe.teacher_images]
            teacher = teacher_cases(site, init_from, known, teacher_dir, device, vocabulary)
    plan = RunPlan(
        train=train + phantoms + real + teacher,
        weights=mixed_weights(
            len(train),
            [
                (len(phantoms), recipe.rehearsal_share),
                (len(real), recipe.real_share),
                (len(teacher), recipe.teacher_share),
            ],
        ),
        validation=validation,
        known=tuple(known),
        site_cases=len(train),
        rehearsal_cases=len(phantoms),
        real_cases=len(real),
        teacher_cases=len(teacher),
    )
    logger.info(
        "training on %d labelled image(s) + %d rehearsal phantom(s) (%.0f%% of the patches) + %d real CT(s) the "
        "served model was trained on (%.0f%%) + %d image(s) with the served model's masks (%.0f%%); validating on %s",
        len(train),
        len(phantoms),
        100 * recipe.rehearsal_share if phantoms else 0,
        len(real),
        100 * recipe.real_share if real else 0,
        len(teacher),
        100 * recipe.teacher_share if teacher else 0,
        ", ".join(c.case_id for c in validation) or "nothing (fewer than two labelled images)",
    )
    return plan
