"""The joint-loss optimisation step: a global batch of prompted patches, split over DDP ranks when distributed."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from textdiffseg.click_training import ClickPlan, ClickPlanner, simulated_click_maps
from textdiffseg.coarse_prior import MISS_RATE, simulate_coarse_prior
from textdiffseg.data.vocabulary import PromptVocabulary
from textdiffseg.diffusion.schedule import make_scheduler, training_target
from textdiffseg.losses import JointLoss
from textdiffseg.networks.model import TextDiffSeg
from textdiffseg.prompt_tuning import structure_of
from textdiffseg.text.encoder import TextEncoder


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
        click_fraction: share of prompts trained with 1-5 clicks simulated from the model's own errors
            (:mod:`textdiffseg.click_training`; the model needs a click branch). A model with a click branch always
            gets click maps (empty for the other prompts), so that every rank uses all its parameters.
        parameters: what the optimiser updates, as parameters or parameter groups (default: every weight of the
            model; a prompts-only run passes :func:`textdiffseg.prompt_tuning.prompt_parameters`).
        vocabulary: tells which structure a paraphrased prompt names, for the model's learned prompts (default: the
            built-in vocabulary).

    A zoom-in fine stage (``model.takes_prior``) is given each prompt's coarse prior, simulated from its target
    (:func:`textdiffseg.coarse_prior.simulate_coarse_prior`, none for ``prior_miss_rate`` of the present structures)
    with a seed every rank draws alike.
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
        click_fraction: float = 0.0,
        prior_miss_rate: float = MISS_RATE,
        parameters: list[torch.nn.Parameter] | list[dict[str, Any]] | None = None,
        vocabulary: PromptVocabulary | None = None,
    ) -> None:
        if click_fraction and not model.takes_clicks:
            raise ValueError("training with clicks needs a model with a click branch (textdiffseg.click_branch)")
        self.model = model.to(device)
        self.network: torch.nn.Module = self.model  # replaced by a DDP wrapper in distributed runs
        self.latent_channels = model.latent_channels
        self.downsample = model.config.downsample
        self.text_encoder = text_encoder
        self.device = torch.device(device)
        self.scheduler = make_scheduler(model.config)
        self.loss = JointLoss(
            model.config.denoise_weight,
            absent_weight=model.config.absent_weight,
            cell_weight=model.config.fused_seg_weight,
            bce_floor=model.config.bce_foreground_floor,
            floor_below=model.config.bce_floor_below,
        )
        trained = parameters if parameters is not None else list(model.parameters())
        self.optimizer = torch.optim.AdamW(trained, lr=lr, weight_decay=1e-5)
        self.vocabulary = vocabulary or PromptVocabulary.load()
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.rank, self.world_size = rank, world_size
        self.state = TrainState()
        self.clicks = ClickPlanner(click_fraction, seed=seed + 1)
        self.prior_miss_rate = prior_miss_rate

    def _noise(self, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (targets.shape[0], self.latent_channels, *(s // self.downsample for s in targets.shape[2:]))
        noise = torch.randn(shape, generator=self.generator)
        t = torch.randint(0, self.scheduler.num_train_timesteps, (shape[0],), generator=self.generator)
        return noise.to(self.device), t.to(self.device)

    def _prior_seed(self) -> int | None:
        """The seed of a patch's simulated coarse prior (fine stages only: other models draw nothing more)."""
        return int(torch.randint(0, 2**31, (1,), generator=self.generator)) if self.model.takes_prior else None

    def _terms(
        self,
        sample: Sample,
        noise: torch.Tensor,
        t: torch.Tensor,
        plan: ClickPlan | None = None,
        prior_seed: int | None = None,
    ) -> dict[str, torch.Tensor]:
        image, prompts, supervised = sample
        # Exclusion prompts mark unknown voxels -1 (textdiffseg.losses.UNKNOWN): the loss skips them, the network
        # encodes an empty mask for them.
        image, supervised = image.to(self.device), supervised.to(self.device)
        targets = supervised.clamp(min=0.0)
        tokens, mask = self.text_encoder.encode(prompts)
        tokens, mask = tokens.to(self.device), mask.to(self.device)
        structures = [structure_of(p, self.vocabulary) for p in prompts] if self.model.config.learned_prompts else None
        clicks = None
        if self.model.takes_clicks:
            plan = plan or ClickPlan((0,) * len(prompts), 0)
            clicks, _ = simulated_click_maps(self.model, image, tokens, mask, targets, plan, structures)
        prior = None
        if self.model.takes_prior:
            prior_generator = torch.Generator().manual_seed(prior_seed or 0)
            prior = simulate_coarse_prior(targets.cpu(), prior_generator, self.prior_miss_rate).to(self.device)
        out = self.network(image, tokens, mask, targets, noise, t, self.scheduler, clicks, prior, structures)
        # The denoising target is detached: the label encoder is shaped by the segmentation terms, not pulled
        # towards latents that are merely easy to denoise (a constant latent would be).
        target = training_target(self.scheduler, out.latent.detach(), noise, t)
        return self.loss(out.logits, out.recon_logits, supervised, out.denoiser_output, target, out.cell_logits)

    def step(self, batch: list[Sample]) -> dict[str, float]:
        """One optimisation step on a global batch; returns this rank's mean loss terms."""
        if len(batch) % self.world_size:
            raise ValueError(f"a global batch of {len(batch)} patches cannot be split over {self.world_size} ranks")
        self.model.train()
        # every rank draws all, to stay in step
        draws = [
            (*self._noise(targets), self.clicks.draw(len(prompts)), self._prior_seed()) for _, prompts, targets in batch
        ]
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
