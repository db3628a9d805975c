"""Training: cases resampled to the model spacing once, prompted patch sampling with negatives, the joint-loss step.

Used by the ``python -m textdiffseg.train`` CLI and by the MONAI Label train task.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
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
from textdiffseg.diffusion.schedule import make_scheduler, training_target
from textdiffseg.losses import JointLoss
from textdiffseg.networks.model import TextDiffSeg
from textdiffseg.text.encoder import TextEncoder

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

    def _crop(self, case: PreparedCase) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = case.image, case.label
        pads = []
        for size, roi in zip(reversed(label.shape), reversed(self.roi_size)):
            extra = max(0, roi - size)
            pads += [extra // 2, extra - extra // 2]
        if any(pads):
            image = torch.nn.functional.pad(image, pads)
            label = torch.nn.functional.pad(label, pads)
        starts = [self.rng.randint(0, s - r) for s, r in zip(label.shape, self.roi_size)]
        box = tuple(slice(s, s + r) for s, r in zip(starts, self.roi_size))
        return image[(slice(None), *box)], label[box]

    def sample(self) -> tuple[torch.Tensor, list[str], torch.Tensor]:
        """One volume patch ``(1, 1, *roi)``, its prompts, and targets ``(P, 1, *roi)``."""
        case = self.rng.choice(self.cases)
        image, label = self._crop(case)
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


@dataclass
class TrainState:
    """Where training stands (plain values, saved with the checkpoint for resuming)."""

    step: int = 0
    epoch: int = 0


Sample = tuple[torch.Tensor, list[str], torch.Tensor]  # (image patch, prompts, target masks)


class Trainer:
    """Optimises the joint loss; one step = a global batch of volume patches, each with several prompts.

    In a distributed run every rank draws the same global batch (same sampler seed) and the same noise, keeps the
    patches ``rank, rank + world, ...`` and accumulates their gradients; DDP averages over ranks, so N ranks take
    exactly the step one process takes on the whole batch (up to float summation order).

    Args:
        model: the network (its config's ``denoise_weight`` is lambda).
        text_encoder: frozen encoder; prompt embeddings are cached by it.
        lr: AdamW learning rate.
        device: torch device.
        seed: seeds the diffusion noise and timesteps (the same on every rank).
        rank, world_size: this process's share of each global batch.
    """

    def __init__(
        self,
        model: TextDiffSeg,
        text_encoder: TextEncoder,
        lr: float = 1e-3,
        device: str = "cpu",
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.model = model.to(device)
        self.network: torch.nn.Module = self.model  # replaced by a DDP wrapper in distributed runs
        self.latent_channels = model.latent_channels
        self.downsample = model.config.downsample
        self.text_encoder = text_encoder
        self.device = torch.device(device)
        self.scheduler = make_scheduler(model.config)
        self.loss = JointLoss(model.config.denoise_weight)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-5)
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.rank, self.world_size = rank, world_size
        self.state = TrainState()

    def _noise(self, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (targets.shape[0], self.latent_channels, *(s // self.downsample for s in targets.shape[2:]))
        noise = torch.randn(shape, generator=self.generator)
        t = torch.randint(0, self.scheduler.num_train_timesteps, (shape[0],), generator=self.generator)
        return noise.to(self.device), t.to(self.device)

    def _terms(self, sample: Sample, noise: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
        image, prompts, targets = sample
        image, targets = image.to(self.device), targets.to(self.device)
        tokens, mask = self.text_encoder.encode(prompts)
        out = self.network(image, tokens.to(self.device), mask.to(self.device), targets, noise, t, self.scheduler)
        # The denoising target is detached: the label encoder is shaped by the segmentation terms, not pulled
        # towards latents that are merely easy to denoise (a constant latent would be).
        target = training_target(self.scheduler, out.latent.detach(), noise, t)
        return self.loss(out.logits, out.recon_logits, targets, out.denoiser_output, target)

    def step(self, batch: list[Sample]) -> dict[str, float]:
        """One optimisation step on a global batch; returns this rank's mean loss terms."""
        if len(batch) % self.world_size:
            raise ValueError(f"a global batch of {len(batch)} patches cannot be split over {self.world_size} ranks")
        self.model.train()
        draws = [self._noise(targets) for _, _, targets in batch]  # every rank draws all, to stay in step
        mine = list(range(self.rank, len(batch), self.world_size))
        self.optimizer.zero_grad(set_to_none=True)
        totals: dict[str, float] = {}
        for k, j in enumerate(mine):
            last = k == len(mine) - 1
            sync = contextlib.nullcontext() if last or not hasattr(self.network, "no_sync") else self.network.no_sync()
            with sync:
                terms = self._terms(batch[j], *draws[j])
                (terms["loss"] / len(mine)).backward()
            for key, value in terms.items():
                totals[key] = totals.get(key, 0.0) + float(value) / len(mine)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.state.step += 1
        return totals


def mean_terms(history: list[dict[str, float]]) -> dict[str, float]:
    """Average loss terms over a list of steps."""
    return {k: float(np.mean([h[k] for h in history])) for k in history[0]} if history else {}
