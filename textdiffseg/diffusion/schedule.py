"""The noise schedule shared by training and sampling (MONAI's ``DDIMScheduler``) and prediction-type algebra."""

from __future__ import annotations

import torch
from monai.networks.schedulers import DDIMScheduler

from textdiffseg.config import ModelConfig


def make_scheduler(config: ModelConfig) -> DDIMScheduler:
    """The DDIM scheduler for a model config (same T and schedule at training and inference)."""
    return DDIMScheduler(
        num_train_timesteps=config.num_train_timesteps,
        schedule=config.noise_schedule,
        prediction_type=config.prediction_type,
        clip_sample=True,
    )


def set_inference_timesteps(scheduler: DDIMScheduler, config: ModelConfig, steps: int) -> torch.Tensor:
    """Set ``steps`` inference timesteps on ``scheduler`` with the config's ``timestep_spacing``; returns them.

    ``leading`` is MONAI's own spacing (``[800, 600, 400, 200, 0]`` for 5 of 1000; ``[0]`` for one step);
    ``trailing`` shifts it by one interval less one (``[999, 799, 599, 399, 199]``; ``[999]``), so the first call
    sees pure noise at the noise level it was trained on. DDIM's update reads only the interval length, so the
    shifted steps still end on the clean-latent estimate.
    """
    scheduler.set_timesteps(steps)
    if config.timestep_spacing == "trailing":
        scheduler.timesteps = scheduler.timesteps + (scheduler.num_train_timesteps // steps - 1)
    return scheduler.timesteps


def x0_from_output(
    scheduler: DDIMScheduler, output: torch.Tensor, noisy: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """Convert the denoiser's output to an x0 estimate whatever its prediction type."""
    kind = scheduler.prediction_type
    if kind == "sample":
        return output
    alpha = scheduler.alphas_cumprod.to(noisy.device)[t].view(-1, *([1] * (noisy.dim() - 1)))
    if kind == "epsilon":
        return (noisy - (1 - alpha).sqrt() * output) / alpha.sqrt()
    return alpha.sqrt() * noisy - (1 - alpha).sqrt() * output  # v-prediction


def training_target(scheduler: DDIMScheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """What the denoiser should output for ``x0`` noised with ``noise`` at ``t``."""
    kind = scheduler.prediction_type
    if kind == "sample":
        return x0
    if kind == "epsilon":
        return noise
    return scheduler.get_velocity(x0, noise, t)
