"""Training with simulated clicks: which prompts get clicks, and the click maps from the model's own errors.

On ``click_fraction`` of the prompts, 1 to ``MAX_TRAIN_CLICKS`` clicks are simulated from the errors of the model's
current prediction on that patch (one no-grad sampling pass, :mod:`textdiffseg.click_simulation`); the other prompts
get empty click maps, so text alone keeps being trained as before.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from textdiffseg.click_simulation import error_clicks
from textdiffseg.clicks import Clicks, click_maps
from textdiffseg.diffusion.sampling import sample_masks
from textdiffseg.networks.model import TextDiffSeg

MAX_TRAIN_CLICKS = 5


@dataclass(frozen=True)
class ClickPlan:
    """Clicks to simulate for each prompt of one patch (0: none) and the seed of the sampling noise."""

    counts: tuple[int, ...]
    seed: int

    @property
    def any(self) -> bool:
        """Whether any prompt gets clicks."""
        return any(self.counts)


class ClickPlanner:
    """Draws :class:`ClickPlan` s; every rank of a distributed run draws every patch's plan, to stay in step."""

    def __init__(self, fraction: float, seed: int = 0, max_clicks: int = MAX_TRAIN_CLICKS) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"click fraction must be between 0 and 1, not {fraction}")
        self.fraction = fraction
        self.max_clicks = max_clicks
        self.rng = random.Random(seed)

    def draw(self, prompts: int) -> ClickPlan:
        """A plan for a patch with ``prompts`` prompts."""
        if not self.fraction:
            return ClickPlan((0,) * prompts, 0)
        counts = tuple(
            self.rng.randint(1, self.max_clicks) if self.rng.random() < self.fraction else 0 for _ in range(prompts)
        )
        return ClickPlan(counts, self.rng.getrandbits(62))


@torch.no_grad()
def predicted_masks(
    model: TextDiffSeg,
    image: torch.Tensor,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    seed: int,
    structures: Sequence[str | None] | None = None,
) -> torch.Tensor:
    """``(P, D, H, W)`` boolean masks the model predicts now (text only, the model's sampling steps, eval mode;
    ``structures`` as in :meth:`TextDiffSeg.condition`)."""
    was_training = model.training
    model.eval()
    try:
        condition = model.condition(image, tokens, mask, structures=structures)
        generator = torch.Generator(device=image.device).manual_seed(seed)
        result = sample_masks(model, condition, model.config.sampling_steps, 1, generator)
    finally:
        model.train(was_training)
    return result.probability[:, 0] > 0.5


def simulated_click_maps(
    model: TextDiffSeg,
    image: torch.Tensor,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    targets: torch.Tensor,
    plan: ClickPlan,
    structures: Sequence[str | None] | None = None,
) -> tuple[torch.Tensor, list[Clicks | None]]:
    """``(P, 2, D, H, W)`` click maps for a patch (zeros for prompts the plan gives no clicks) and the clicks.

    Args:
        model: the model being trained (its current prediction decides where the clicks go).
        image: ``(1 or P, C, D, H, W)`` the patch.
        tokens, mask: the text encoder's output for the P prompts.
        targets: ``(P, 1, D, H, W)`` target masks.
        plan: how many clicks each prompt gets.
        structures: what each prompt is understood as (models with learned prompts).
    """
    clicks: list[Clicks | None] = [None] * targets.shape[0]
    chosen = [i for i, n in enumerate(plan.counts) if n]
    if chosen:
        rows = torch.tensor(chosen, device=tokens.device)
        chosen_structures = [structures[i] for i in chosen] if structures is not None else None
        predicted = predicted_masks(model, image, tokens[rows], mask[rows], plan.seed, chosen_structures).cpu()
        for k, i in enumerate(chosen):
            clicks[i] = error_clicks(predicted[k], targets[i, 0].cpu() > 0.5, plan.counts[i])
    maps = click_maps(clicks, tuple(targets.shape[2:])).to(targets.device)
    return maps, clicks
