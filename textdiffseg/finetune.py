"""The few-label fine-tuning recipe of ``/train``: what a site's first labels are trained with, and on what else.

A site submits one or a few labelled CTs, often of a structure the served model never learned. The recipe:

* **What is trained** (``tune``, ``textdiffseg.prompt_tuning``): when every labelled structure is new to the served
  model, only a learned prompt per new structure (tokens and a small feature adapter, peak rate ``prompt_lr``); the
  network stays frozen, so every answer the served model gave stays exactly as it was, and nothing needs
  rehearsing. When the site labelled a structure the model knows (a correction), every weight is trained, with
  everything below.

* **Time, not steps**: the run stops after ``max_minutes`` (12 by default: on 2 CPU cores a run, its validation and
  the publish gate end within 15 minutes; a GPU does many more steps in the same time). The learning rate warms up
  and decays along a cosine over that time (``textdiffseg.train_schedule``).
* **Foreground patches**: half the patches are centred on a labelled structure (a small structure in a large CT
  is otherwise rarely in a patch), and every patch is augmented (``textdiffseg.augment``: HU, noise, blur, rotation,
  scale): one labelled patient must stand for others.
* **Rehearsal** of what the served model knew, prompted only with the structures its checkpoint records as
  trained, from three sources (shares of the patches in :class:`Recipe`):

  - synthetic phantoms (``textdiffseg.data.phantom``, generated once with a fixed seed) with their exact labels;
    they do not draw lungs, vessels or bones;
  - the real CT the served model was trained on, when at hand (``--conf rehearsal_data``, by default the
    repository's ``datasets/realct`` from ``make realct``);
  - the site's own training images (``teacher_images``: one, since segmenting every known structure on a whole CT
    takes tens of seconds on a CPU) with the served model's masks as targets and the site's label in the same map
    (``textdiffseg.self_distillation``): real anatomy on the site's scanner, and the structures the served model
    finds absent there stay absent. The teacher segments the image once before the run, not every patch (a
    diffusion sampling per patch would double the cost of a step on a CPU).

  With ``exclusion_fraction`` of the prompts, a case is also asked for a structure it does not annotate and
  supervised only where its labels show a structure known to be disjoint from it: the site's "ribs" learns that it
  is not the liver of a rehearsal CT. The learning rate is low (1e-4 peak): fine-tuning the whole network with
  fresh Adam moments moves every weight, and at 2e-4 known real anatomy fell further in the same time.
* **Validation share**: with two or more labelled images, about a fifth of them (at least one) are held out; the
  run is validated on them and keeps its best weights (``textdiffseg.train_progress``).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from textdiffseg.data.folders import LabelledCase, load_folder
from textdiffseg.data.phantom import PhantomConfig, write_dataset

PHANTOM_SPACING = (2.5, 2.5, 2.5)
REHEARSAL_SEED, REHEARSAL_CASES = 14, 4
REGRESSION_SEED, REGRESSION_CASES = 2025, 2  # the publish gate's fixed regression set (never trained on)


@dataclass(frozen=True)
class Recipe:
    """The defaults of a ``/train`` run."""

    max_minutes: float = 12.0
    lr: float = 1e-4
    lr_schedule: str = "cosine"
    foreground_fraction: float = 0.5
    augment: bool = True
    rehearsal_share: float = 0.15  # share of the patches drawn from the rehearsal phantoms
    real_share: float = 0.2  # share drawn from the real CT the served model was trained on (``rehearsal_data``)
    teacher_share: float = 0.2  # share drawn from the site's images with the served model's masks as targets
    exclusion_fraction: float = 0.25  # prompts of a structure a case does not annotate, where it is known not to be
    teacher_images: int = 1  # at most this many site images get teacher masks (each costs one segmentation)
    validation_fraction: float = 0.2  # share of the labelled images held out (at least one when there are two)
    prompt_lr: float = 1e-2  # peak learning rate of learned prompts (runs that teach only new structures)


def phantom_set(folder: Path, seed: int, n: int) -> Path:
    """``folder`` holding ``n`` phantoms of series ``seed`` (written once: a finished folder is reused)."""
    if (folder / "dataset.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        write_dataset(tmp, n=n, seed=seed, cfg=PhantomConfig(spacing=PHANTOM_SPACING))
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def known_cases(folder: Path, known: Iterable[str], id_suffix: str = "_rehearsal") -> list[LabelledCase]:
    """The cases of a dataset folder (the real CT a checkpoint was trained on, or the regression phantoms) with only
    the structures in ``known`` as targets; a case holding none of them is left out. Case ids get ``id_suffix``
    (rehearsal cases must not share an id with the site's own; the regression phantoms keep theirs)."""
    keep = set(known)
    cases = []
    for case in load_folder(folder):
        targets = {name: values for name, values in case.targets.items() if name in keep}
        if targets:
            cases.append(LabelledCase(f"{case.case_id}{id_suffix}", case.image, case.label, targets))
    return cases


def split_validation(cases: Sequence[LabelledCase], fraction: float) -> tuple[list[LabelledCase], list[LabelledCase]]:
    """``(train, validation)``: with two or more cases, the last ``round(fraction * n)`` (at least one) by case id
    are held out; with one, it is trained on and nothing is validated."""
    ordered = sorted(cases, key=lambda c: c.case_id)
    if len(ordered) < 2:
        return ordered, []
    held = min(len(ordered) - 1, max(1, round(fraction * len(ordered))))
    return ordered[:-held], ordered[-held:]


def mixed_weights(n_site: int, rehearsal: Sequence[tuple[int, float]]) -> list[float] | None:
    """Per-case sampling weights for the site's ``n_site`` cases followed by each rehearsal group's cases.

    ``rehearsal`` holds ``(cases, share)`` per group; each non-empty group gets its share, split evenly among its
    cases, and the site's cases share the rest (``None``: no rehearsal case, every site case alike).
    """
    groups = [(n, share) for n, share in rehearsal if n]
    if not groups:
        return None
    taken = sum(share for _, share in groups)
    if any(share <= 0.0 for _, share in groups) or not 0.0 < taken < 1.0:
        raise ValueError(f"rehearsal shares must be positive and sum below 1, got {[s for _, s in groups]}")
    weights = [(1.0 - taken) / n_site] * n_site
    for n, share in groups:
        weights += [share / n] * n
    return weights
