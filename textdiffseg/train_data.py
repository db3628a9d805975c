"""Training data: cases resampled to the model spacing once, random patch crops, prompted sampling with negatives.

Used by ``textdiffseg.train_loop`` (the CLI and the MONAI Label train task) and by the benchmarks' baselines.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    LoadImaged,
    Orientationd,
    ScaleIntensityRanged,
    Spacingd,
)

from textdiffseg.config import ModelConfig
from textdiffseg.data.folders import LabelledCase
from textdiffseg.data.vocabulary import PromptVocabulary

MIN_TARGET_VOXELS = 3  # a structure with fewer voxels at the model spacing counts as absent


@dataclass
class PreparedCase:
    """A case at the model spacing, RAS-oriented, intensities in [0, 1], with the structures it contains."""

    case_id: str
    image: torch.Tensor  # (1, D, H, W) float32
    label: torch.Tensor  # (D, H, W) int16
    targets: dict[str, tuple[int, ...]]
    present: frozenset[str]

    def target_mask(self, name: str) -> torch.Tensor:
        """Binary mask (float) of a structure, all zeros when absent."""
        values = torch.tensor(self.targets[name], dtype=self.label.dtype)
        return torch.isin(self.label, values).float()


def preprocessing(config: ModelConfig) -> Compose:
    """MONAI dictionary transforms from files to model-ready tensors (image bilinear, label nearest)."""
    lo, hi = config.hu_window
    return Compose(
        [
            LoadImaged(keys=("image", "label"), image_only=True),
            EnsureChannelFirstd(keys=("image", "label")),
            Orientationd(keys=("image", "label"), axcodes="RAS"),
            Spacingd(keys=("image", "label"), pixdim=config.spacing, mode=("bilinear", "nearest")),
            ScaleIntensityRanged(keys="image", a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True),
        ]
    )


def prepare_cases(cases: Iterable[LabelledCase], config: ModelConfig) -> list[PreparedCase]:
    """Load and resample every case once (they are small at the model spacing)."""
    transform = preprocessing(config)
    prepared = []
    for case in cases:
        data = transform({"image": str(case.image), "label": str(case.label)})
        label = data["label"].as_tensor()[0].round().to(torch.int16)
        present = frozenset(
            name
            for name, values in case.targets.items()
            if int(torch.isin(label, torch.tensor(values, dtype=label.dtype)).sum()) >= MIN_TARGET_VOXELS
        )
        prepared.append(
            PreparedCase(case.case_id, data["image"].as_tensor().float(), label, dict(case.targets), present)
        )
    return prepared


def random_crop(
    case: PreparedCase, roi_size: tuple[int, int, int], rng: random.Random
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random ``roi_size`` box of a case's image ``(1, *roi)`` and label ``(*roi)``, zero-padded (centred) where
    the case is smaller than the box."""
    image, label = case.image, case.label
    pads = []
    for size, roi in zip(reversed(label.shape), reversed(roi_size)):
        extra = max(0, roi - size)
        pads += [extra // 2, extra - extra // 2]
    if any(pads):
        image = torch.nn.functional.pad(image, pads)
        label = torch.nn.functional.pad(label, pads)
    starts = [rng.randint(0, s - r) for s, r in zip(label.shape, roi_size)]
    box = tuple(slice(s, s + r) for s, r in zip(starts, roi_size))
    return image[(slice(None), *box)], label[box]


class PromptedPatchSampler:
    """Draws (image patch, prompts, target masks) with prompt paraphrases and negative (absent-structure) prompts.

    Negatives are only drawn among structures the case's dataset *annotates* but that are absent from this case
    ("liver tumor" on a tumour-free liver), never among structures the dataset does not label at all.
    ``structures`` limits training to some of the annotated structures (e.g. a kidney-only site model).
    """

    def __init__(
        self,
        cases: list[PreparedCase],
        vocabulary: PromptVocabulary,
        roi_size: tuple[int, int, int],
        prompts_per_volume: int = 4,
        negative_fraction: float = 0.25,
        seed: int = 0,
        structures: tuple[str, ...] | None = None,
    ) -> None:
        if not cases:
            raise ValueError("no training cases")
        if structures:
            known = set().union(*(c.targets for c in cases))
            unknown = sorted(set(structures) - known)
            if unknown:
                raise ValueError(f"structures {unknown} are not annotated in the training data (has {sorted(known)})")
        self.structures = frozenset(structures) if structures else None
        if self.structures:  # a case that annotates none of the chosen structures has nothing to prompt
            cases = [c for c in cases if self.structures & set(c.targets)]
        self.cases = cases
        self.vocabulary = vocabulary
        self.roi_size = roi_size
        self.prompts_per_volume = prompts_per_volume
        self.negative_fraction = negative_fraction
        self.rng = random.Random(seed)

    @property
    def prompted_structures(self) -> list[str]:
        """Every structure this sampler prompts (as a positive or as an absent-structure negative)."""
        names = set().union(*(c.targets for c in self.cases))
        return sorted(names & self.structures if self.structures else names)

    def sample(self) -> tuple[torch.Tensor, list[str], torch.Tensor]:
        """One volume patch ``(1, 1, *roi)``, its prompts, and targets ``(P, 1, *roi)``."""
        case = self.rng.choice(self.cases)
        image, label = random_crop(case, self.roi_size, self.rng)
        cropped = PreparedCase(case.case_id, image, label, case.targets, case.present)
        allowed = self.structures or frozenset(case.targets)
        positives = sorted(case.present & allowed)
        negatives = sorted((set(case.targets) - case.present) & allowed)
        names = []
        for _ in range(self.prompts_per_volume):
            use_negative = negatives and (not positives or self.rng.random() < self.negative_fraction)
            names.append(self.rng.choice(negatives if use_negative else positives))
        prompts = [self.vocabulary.sample_prompt(n, self.rng) if n in self.vocabulary.names else n for n in names]
        targets = torch.stack([cropped.target_mask(n) for n in names])[:, None]
        jitter = 1.0 + 0.05 * (2 * self.rng.random() - 1)
        return (image * jitter)[None], prompts, targets
