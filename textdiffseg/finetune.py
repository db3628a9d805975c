"""The few-label fine-tuning recipe of ``/train``: what a site's first labels are trained with, and on what else.

A site submits one or a few labelled CTs, often of a structure the served model never learned. The recipe:

* **Time, not steps**: the run stops after ``max_minutes`` (12 by default: on 2 CPU cores a run, its validation and
  the publish gate end within 15 minutes; a GPU does many more steps in the same time). The learning rate warms up
  and decays along a cosine over that time (``textdiffseg.train_schedule``).
* **Foreground patches**: half the patches are centred on a labelled structure (a small structure in a large CT
  is otherwise rarely in a patch), and every patch is augmented (``textdiffseg.augment``: HU, noise, blur, rotation,
  scale): one labelled patient must stand for others.
* **Rehearsal**: a share of the patches comes from synthetic phantoms (``textdiffseg.data.phantom``, generated
  once with a fixed seed) prompted only with the structures the served checkpoint records as trained, with their
  true labels. Rehearsal was chosen over distillation from the served model: phantom labels are exact (the served
  model's own masks would teach its errors), they cost nothing to make offline, and a distillation target would
  need a diffusion sampling of the teacher for every patch, doubling the cost of a step on a CPU. Its limit:
  anatomy the phantom does not draw (lungs, vessels, bones of a real-CT checkpoint) is not rehearsed; the publish
  gate still checks what it can.
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
from textdiffseg.data.label_maps import PHANTOM_TARGETS
from textdiffseg.data.phantom import PhantomConfig, write_dataset

PHANTOM_SPACING = (2.5, 2.5, 2.5)
REHEARSAL_SEED, REHEARSAL_CASES = 14, 4
REGRESSION_SEED, REGRESSION_CASES = 2025, 2  # the publish gate's fixed regression set (never trained on)


@dataclass(frozen=True)
class Recipe:
    """The defaults of a ``/train`` run."""

    max_minutes: float = 12.0
    lr: float = 5e-4
    lr_schedule: str = "cosine"
    foreground_fraction: float = 0.5
    augment: bool = True
    rehearsal_share: float = 0.3  # share of the patches drawn from the rehearsal phantoms
    validation_fraction: float = 0.2  # share of the labelled images held out (at least one when there are two)


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


def known_phantom_cases(folder: Path, known: Iterable[str]) -> list[LabelledCase]:
    """The phantom cases of ``folder`` with only the structures in ``known`` as targets (none known: no case)."""
    keep = set(known) & set(PHANTOM_TARGETS)
    if not keep:
        return []
    return [
        LabelledCase(c.case_id, c.image, c.label, {k: v for k, v in c.targets.items() if k in keep})
        for c in load_folder(folder)
    ]


def split_validation(cases: Sequence[LabelledCase], fraction: float) -> tuple[list[LabelledCase], list[LabelledCase]]:
    """``(train, validation)``: with two or more cases, the last ``round(fraction * n)`` (at least one) by case id
    are held out; with one, it is trained on and nothing is validated."""
    ordered = sorted(cases, key=lambda c: c.case_id)
    if len(ordered) < 2:
        return ordered, []
    held = min(len(ordered) - 1, max(1, round(fraction * len(ordered))))
    return ordered[:-held], ordered[-held:]


def mixed_weights(n_site: int, n_rehearsal: int, rehearsal_share: float) -> list[float] | None:
    """Per-case sampling weights: the site's cases share ``1 - rehearsal_share``, the rehearsal cases the rest
    (``None``: no rehearsal case, every site case alike)."""
    if not n_rehearsal:
        return None
    if not 0.0 < rehearsal_share < 1.0:
        raise ValueError(f"rehearsal_share must be between 0 and 1, got {rehearsal_share}")
    site = [(1.0 - rehearsal_share) / n_site] * n_site
    return site + [rehearsal_share / n_rehearsal] * n_rehearsal
