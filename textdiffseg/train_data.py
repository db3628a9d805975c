"""Training data: cases resampled to the model spacing once, random patch crops, prompted sampling with negatives.

Used by ``textdiffseg.train_loop`` (the CLI and the MONAI Label train task) and by the benchmarks' baselines.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    LoadImaged,
    Orientationd,
    Spacingd,
)

from textdiffseg.augment import AIR_HU, PatchAugmenter  # AIR_HU pads a case smaller than the patch
from textdiffseg.config import ModelConfig
from textdiffseg.data.folders import LabelledCase
from textdiffseg.data.vocabulary import PromptVocabulary
from textdiffseg.intensity import HUWindows
from textdiffseg.losses import UNKNOWN
from textdiffseg.postprocess import LESION_ORGAN

MIN_TARGET_VOXELS = 3  # a structure with fewer voxels at the model spacing counts as absent


@dataclass
class PreparedCase:
    """A case at the model spacing, RAS-oriented, intensities in [0, 1] (one channel per HU window), with the
    structures it contains, and its HU image (augmentation works in HU)."""

    case_id: str
    image: torch.Tensor  # (C, D, H, W) float32, C = number of HU windows
    label: torch.Tensor  # (D, H, W) int16
    targets: dict[str, tuple[int, ...]]
    present: frozenset[str]
    hu: torch.Tensor | None = None  # (1, D, H, W) float32 HU

    def target_mask(self, name: str) -> torch.Tensor:
        """Binary mask (float) of a structure, all zeros when absent."""
        values = torch.tensor(self.targets[name], dtype=self.label.dtype)
        return torch.isin(self.label, values).float()


def preprocessing(config: ModelConfig) -> Compose:
    """MONAI dictionary transforms from files to tensors at the model spacing, in HU (image bilinear, label nearest);
    :class:`textdiffseg.intensity.HUWindows` makes the model input."""
    return Compose(
        [
            LoadImaged(keys=("image", "label"), image_only=True),
            EnsureChannelFirstd(keys=("image", "label")),
            Orientationd(keys=("image", "label"), axcodes="RAS"),
            Spacingd(keys=("image", "label"), pixdim=config.spacing, mode=("bilinear", "nearest")),
        ]
    )


def prepare_cases(cases: Iterable[LabelledCase], config: ModelConfig) -> list[PreparedCase]:
    """Load and resample every case once (they are small at the model spacing)."""
    transform = preprocessing(config)
    window = HUWindows(config.input_windows)
    prepared = []
    for case in cases:
        data = transform({"image": str(case.image), "label": str(case.label)})
        hu = data["image"].as_tensor().float()
        label = data["label"].as_tensor()[0].round().to(torch.int16)
        present = frozenset(
            name
            for name, values in case.targets.items()
            if int(torch.isin(label, torch.tensor(values, dtype=label.dtype)).sum()) >= MIN_TARGET_VOXELS
        )
        image = torch.as_tensor(window(hu)).float()
        prepared.append(PreparedCase(case.case_id, image, label, dict(case.targets), present, hu))
    return prepared


def random_crop(
    case: PreparedCase,
    roi_size: tuple[int, int, int],
    rng: random.Random,
    centre: Sequence[int] | None = None,
    use_hu: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random ``roi_size`` box of a case's image ``(C, *roi)`` and label ``(*roi)``, padded (centred) where the
    case is smaller than the box (zeros; air with ``use_hu``, which crops the HU image instead).

    ``centre``: a voxel the box is centred on (moved inwards where it would leave the case); default a uniform box.
    """
    image, label = (case.hu, case.label) if use_hu else (case.image, case.label)
    if image is None:
        raise ValueError(f"case {case.case_id} has no HU image to crop")
    pads, offsets = [], []
    for size, roi in zip(reversed(label.shape), reversed(roi_size)):
        extra = max(0, roi - size)
        pads += [extra // 2, extra - extra // 2]
        offsets.insert(0, extra // 2)
    if any(pads):
        image = torch.nn.functional.pad(image, pads, value=AIR_HU if use_hu else 0.0)
        label = torch.nn.functional.pad(label, pads)
    if centre is None:
        starts = [rng.randint(0, s - r) for s, r in zip(label.shape, roi_size)]
    else:
        starts = [min(max(0, c + o - r // 2), s - r) for c, o, s, r in zip(centre, offsets, label.shape, roi_size)]
    box = tuple(slice(s, s + r) for s, r in zip(starts, roi_size))
    return image[(slice(None), *box)], label[box]


LESION_WORDS = ("tumor", "tumour", "cyst", "lesion", "nodule", "mass", "metasta")


def is_lesion(name: str) -> bool:
    """A lesion prompt (the built-in ones of :data:`textdiffseg.postprocess.LESION_ORGAN`, or a free name saying so)."""
    return name in LESION_ORGAN or any(word in name.lower() for word in LESION_WORDS)


class PromptedPatchSampler:
    """Draws (image patch, prompts, target masks) with prompt paraphrases and negative (absent-structure) prompts.

    Negatives are only drawn among structures the case's dataset *annotates* but that are absent from this case
    ("liver tumor" on a tumour-free liver), never among structures the dataset does not label at all.
    ``structures`` limits training to some of the annotated structures (e.g. a kidney-only site model).

    ``case_weights`` (one per case) weight the choice of case (e.g. to balance real and phantom sources; default:
    uniform). ``foreground_fraction`` of the patches are centred on a random voxel of a structure the case
    contains, and that structure is the patch's first prompt (nnU-Net oversamples foreground for a third of its
    patches); the others are uniform boxes. ``augment`` (:class:`textdiffseg.augment.PatchAugmenter`) augments every
    patch.

    ``exclusion_fraction`` of the prompts (where a case allows one) are *exclusion prompts*: a structure this case
    does not annotate, supervised only where the case's labels say it is not (partial-label training, as in
    multi-dataset segmenters): the voxels of the structures the case does annotate that are disjoint from it. Two
    structures are disjoint when at least one case annotates both and no such case gives them a common label value
    (liver and left lung, not kidney and left kidney; never two that no case annotates together); lesions are never
    excluded (:func:`is_lesion`: a tumour may lie in an organ whose label does not name it). So a chest CT
    labelled only for lungs, ribs and spine still teaches that "liver" is not in its lungs. The target is
    :data:`textdiffseg.losses.UNKNOWN` elsewhere. With the defaults the sampler draws exactly what it drew before
    these options existed.
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
        case_weights: Sequence[float] | None = None,
        foreground_fraction: float = 0.0,
        augment: PatchAugmenter | None = None,
        exclusion_fraction: float = 0.0,
    ) -> None:
        if not cases:
            raise ValueError("no training cases")
        if case_weights is not None and len(case_weights) != len(cases):
            raise ValueError(f"{len(case_weights)} case weights for {len(cases)} cases")
        if not 0.0 <= foreground_fraction <= 1.0:
            raise ValueError("foreground_fraction must be between 0 and 1")
        weights = list(case_weights) if case_weights is not None else None
        if structures:
            known = set().union(*(c.targets for c in cases))
            unknown = sorted(set(structures) - known)
            if unknown:
                raise ValueError(f"structures {unknown} are not annotated in the training data (has {sorted(known)})")
        self.structures = frozenset(structures) if structures else None
        if self.structures:  # a case that annotates none of the chosen structures has nothing to prompt
            keep = [i for i, c in enumerate(cases) if self.structures & set(c.targets)]
            cases = [cases[i] for i in keep]
            weights = [weights[i] for i in keep] if weights is not None else None
        if weights is not None and (any(w < 0 for w in weights) or sum(weights) <= 0):
            raise ValueError("case weights must be >= 0 with a positive sum")
        self.cases = cases
        self.case_weights = weights
        self.foreground_fraction = foreground_fraction
        self.augment = augment
        self._voxels: dict[tuple[int, str], torch.Tensor] = {}
        self.vocabulary = vocabulary
        self.roi_size = roi_size
        self.prompts_per_volume = prompts_per_volume
        self.negative_fraction = negative_fraction
        self.rng = random.Random(seed)
        if not 0.0 <= exclusion_fraction <= 1.0:
            raise ValueError("exclusion_fraction must be between 0 and 1")
        self.exclusion_fraction = exclusion_fraction
        self._exclusions = self._exclusion_sources() if exclusion_fraction else [{} for _ in cases]

    def _exclusion_sources(self) -> list[dict[str, tuple[int, ...]]]:
        """Per case: each structure it does not annotate -> the label values known not to be it (see the class)."""
        together: dict[tuple[str, str], bool] = {}  # (a, b) annotated together somewhere -> always disjoint there
        for case in self.cases:
            for a, values_a in case.targets.items():
                for b, values_b in case.targets.items():
                    if a != b:
                        disjoint = not set(values_a) & set(values_b)
                        together[a, b] = together.get((a, b), True) and disjoint
        prompted = set(self.prompted_structures)
        sources = []
        for case in self.cases:
            known = {}
            for name in sorted(prompted - set(case.targets)):
                if is_lesion(name):  # a lesion may lie in any organ whose label does not name it
                    continue
                values = {v for other in case.present if together.get((name, other)) for v in case.targets[other]}
                if values:
                    known[name] = tuple(sorted(values))
            sources.append(known)
        return sources

    def reseed(self, seed: int) -> None:
        """Restart the sampler's draws (and its augmenter's) from ``seed``: each background worker gets its own."""
        seed %= 2**31
        self.rng = random.Random(seed)
        if self.augment is not None:
            self.augment.reseed(seed + 1)

    @property
    def prompted_structures(self) -> list[str]:
        """Every structure this sampler prompts (as a positive or as an absent-structure negative)."""
        names = set().union(*(c.targets for c in self.cases))
        return sorted(names & self.structures if self.structures else names)

    def _random_voxel(self, index: int, name: str) -> list[int]:
        key = (index, name)
        if key not in self._voxels:
            self._voxels[key] = torch.nonzero(self.cases[index].target_mask(name) > 0)
        voxels = self._voxels[key]
        return [int(v) for v in voxels[self.rng.randrange(len(voxels))]]

    def sample(self) -> tuple[torch.Tensor, list[str], torch.Tensor]:
        """One volume patch ``(1, C, *roi)``, its prompts, and targets ``(P, 1, *roi)``."""
        if self.case_weights is None:
            index = self.rng.choice(range(len(self.cases)))  # the same draw as choice(self.cases)
        else:
            index = self.rng.choices(range(len(self.cases)), weights=self.case_weights)[0]
        case = self.cases[index]
        allowed = self.structures or frozenset(case.targets)
        positives = sorted(case.present & allowed)
        negatives = sorted((set(case.targets) - case.present) & allowed)
        focus = None
        if self.foreground_fraction and positives and self.rng.random() < self.foreground_fraction:
            focus = self.rng.choice(positives)
        centre = None if focus is None else self._random_voxel(index, focus)
        image, label = random_crop(case, self.roi_size, self.rng, centre, use_hu=self.augment is not None)
        if self.augment is not None:
            image, label = self.augment(image, label)
        cropped = PreparedCase(case.case_id, image, label, case.targets, case.present)
        names = []
        for _ in range(self.prompts_per_volume):
            use_negative = negatives and (not positives or self.rng.random() < self.negative_fraction)
            names.append(self.rng.choice(negatives if use_negative else positives))
        if focus is not None:
            names[0] = focus
        exclusions = self._exclusions[index]
        excluded = [  # the focus structure (first prompt) stays
            bool(exclusions) and not (focus is not None and k == 0) and self.rng.random() < self.exclusion_fraction
            for k in range(len(names))
        ]
        for k in range(len(names)):
            if excluded[k]:
                names[k] = self.rng.choice(sorted(exclusions))
        prompts = [self.vocabulary.sample_prompt(n, self.rng) if n in self.vocabulary.names else n for n in names]
        targets = torch.stack(
            [exclusion_target(label, exclusions[n]) if ex else cropped.target_mask(n) for n, ex in zip(names, excluded)]
        )[:, None]
        jitter = 1.0 + 0.05 * (2 * self.rng.random() - 1)
        return (image * jitter)[None], prompts, targets


def exclusion_target(label: torch.Tensor, known_values: Sequence[int]) -> torch.Tensor:
    """0 where the label holds one of ``known_values`` (known not to be the prompt), UNKNOWN elsewhere."""
    known = torch.isin(label, torch.tensor(tuple(known_values), dtype=label.dtype))
    return torch.where(known, 0.0, UNKNOWN)
