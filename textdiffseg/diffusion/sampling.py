"""Forward noising (eq. 3) and DDIM sampling of label latents with MONAI's ``DDIMScheduler``."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from textdiffseg.diffusion.schedule import make_scheduler, set_inference_timesteps
from textdiffseg.networks.model import Condition, TextDiffSeg


@dataclass
class SampleResult:
    """Mean foreground probability over the ensemble and two voxelwise uncertainty maps."""

    probability: torch.Tensor  # (P, 1, D, H, W)
    variance: torch.Tensor  # variance of the members' probabilities
    entropy: torch.Tensor  # binary entropy (bits) of the mean probability


def prompt_seed(seed: int, prompt: str) -> int:
    """The seed of one prompt's noise stream: a hash of the request's seed and the prompt's text.

    One stream per prompt makes a prompt's mask independent of the other prompts of the request and of their order
    ("liver" alone and "liver; spleen" give the same liver), and the same request gives the same bytes.
    """
    digest = hashlib.sha256(f"{int(seed)}\0{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _initial_noise(
    shape: tuple[int, ...],
    ensemble: int,
    generator: torch.Generator | Sequence[torch.Generator] | None,
    like: torch.Tensor,
) -> torch.Tensor:
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)
    if len(generator) * ensemble != shape[0]:
        raise ValueError(f"{len(generator)} generators for {shape[0] // ensemble} prompts")
    one = (ensemble, *shape[1:])
    return torch.cat([torch.randn(one, generator=g, device=like.device, dtype=like.dtype) for g in generator])


@torch.no_grad()
def sample_masks(
    model: TextDiffSeg,
    condition: Condition,
    steps: int,
    ensemble: int = 1,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
) -> SampleResult:
    """DDIM-sample label latents for every prompt (and ensemble member) in one batch, then decode.

    The condition (image features, fused text) is computed once by the caller; each DDIM step is one batched
    denoiser call over P x ensemble latents. ``generator``: one for all noise, or one per prompt (each draws that
    prompt's ``ensemble`` latents, so a prompt's noise does not depend on which prompts share the batch).
    """
    scheduler = make_scheduler(model.config)
    timesteps = set_inference_timesteps(scheduler, model.config, steps)
    fused = condition.fused.repeat_interleave(ensemble, dim=0) if ensemble > 1 else condition.fused
    shape = (fused.shape[0], model.latent_channels, *fused.shape[2:])
    latent = _initial_noise(shape, ensemble, generator, fused)
    x0 = latent
    for t in timesteps:
        t_batch = torch.full((shape[0],), int(t), device=fused.device, dtype=torch.long)
        output = model.denoise(latent, t_batch, fused)
        latent, x0 = scheduler.step(output, int(t), latent)
    if condition.skips and condition.skips[0].shape[0] > 1 and ensemble > 1:
        skips = [s.repeat_interleave(ensemble, dim=0) for s in condition.skips]
        condition = replace(condition, skips=skips)
    probs = torch.sigmoid(model.decode_label(x0.clamp(-1, 1), condition))
    probs = probs.view(-1, ensemble, *probs.shape[1:])
    mean = probs.mean(1)
    p = mean.clamp(1e-6, 1 - 1e-6)
    entropy = -(p * p.log2() + (1 - p) * (1 - p).log2())
    return SampleResult(probability=mean, variance=probs.var(1, unbiased=False), entropy=entropy)
