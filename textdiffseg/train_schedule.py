"""How a run paces itself: the learning-rate schedule (by steps or by wall time) and background patch drawing."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from textdiffseg.train_data import PromptedPatchSampler
from textdiffseg.train_step import Sample

LR_SCHEDULES = ("constant", "cosine")
WARMUP_FRACTION = 0.03  # share of the run the cosine schedule spends warming up
FINAL_LR_FRACTION = 0.05  # where the cosine schedule ends, as a share of the peak rate


class LearningRateSchedule:
    """Sets the optimizer's learning rate before each step.

    ``constant`` keeps ``lr``. ``cosine`` warms up linearly over the first 3 % of the run, then decays along a
    cosine to 5 % of ``lr``. The run's progress is the larger of ``step / steps`` and ``elapsed / budget_s``, so a
    run stopped by its time budget still ends its schedule at the low rate.
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, lr: float, kind: str, steps: int, budget_s: float | None = None
    ) -> None:
        if kind not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, not {kind!r}")
        if budget_s is not None and budget_s <= 0:
            raise ValueError(f"the time budget must be positive, got {budget_s} s")
        self.optimizer, self.peak, self.kind, self.steps, self.budget_s = optimizer, lr, kind, steps, budget_s
        self.current = lr

    def progress(self, step: int, elapsed_s: float) -> float:
        """Share of the run done, 0..1, by steps or by time, whichever is further."""
        done = step / max(1, self.steps)
        if self.budget_s is not None:
            done = max(done, elapsed_s / self.budget_s)
        return min(1.0, done)

    def rate(self, progress: float) -> float:
        """The learning rate at a given share of the run."""
        if self.kind == "constant":
            return self.peak
        if progress < WARMUP_FRACTION:
            return self.peak * max(progress / WARMUP_FRACTION, 0.01)
        decay = (progress - WARMUP_FRACTION) / (1.0 - WARMUP_FRACTION)
        low = self.peak * FINAL_LR_FRACTION
        return low + 0.5 * (self.peak - low) * (1.0 + math.cos(math.pi * decay))

    def update(self, step: int, elapsed_s: float) -> float:
        """Set and return the rate for the step about to run."""
        self.current = self.rate(self.progress(step, elapsed_s))
        for group in self.optimizer.param_groups:  # a group with an ``lr_scale`` runs at that share of the rate
            group["lr"] = self.current * group["lr_scale"] if "lr_scale" in group else self.current
        return self.current


class _PatchDataset(torch.utils.data.IterableDataset):
    """An endless stream of one sampler's patches; each DataLoader worker reseeds its copy of the sampler."""

    def __init__(self, sampler: PromptedPatchSampler) -> None:
        super().__init__()
        self.sampler = sampler

    def __iter__(self) -> Iterator[Sample]:
        info = torch.utils.data.get_worker_info()
        if info is not None:
            self.sampler.reseed(info.seed)
        while True:
            yield self.sampler.sample()


def patch_stream(sampler: PromptedPatchSampler, workers: int = 0) -> Iterator[Sample]:
    """Patches from ``sampler``: drawn in this process (``workers=0``, reproducible), or by ``workers`` background
    processes (a GPU otherwise waits on augmentation; the draws then depend on the workers' seeds and order)."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if workers == 0:
        return iter(sampler.sample, None)
    loader = torch.utils.data.DataLoader(
        _PatchDataset(sampler), batch_size=None, num_workers=workers, prefetch_factor=4, persistent_workers=True
    )
    return iter(loader)
