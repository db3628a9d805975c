"""Conditional denoiser: MONAI's 3D ``DiffusionModelUNet`` on concat(z_l(t), z_fused), conditioned on t."""

from __future__ import annotations

import torch
from monai.networks.nets import DiffusionModelUNet
from torch import nn


class ConditionalDenoiser(nn.Module):
    """Predicts x0 (or noise / v) of the label latent from its noisy version and the fused image-text features.

    Text reaches the denoiser through ``z_fused`` (eq. 2), so the UNet needs no cross-attention of its own; its last
    level uses self-attention for global 3D context.
    """

    def __init__(self, latent_channels: int, condition_channels: int, channels: tuple[int, int]) -> None:
        super().__init__()
        groups = 8 if all(c % 8 == 0 for c in channels) else 1
        self.unet = DiffusionModelUNet(
            spatial_dims=3,
            in_channels=latent_channels + condition_channels,
            out_channels=latent_channels,
            num_res_blocks=1,
            channels=channels,
            attention_levels=(False, True),
            norm_num_groups=groups,
            num_head_channels=channels[-1] // 2,
        )

    def forward(self, noisy_latent: torch.Tensor, timesteps: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """``noisy_latent`` (B, k, ...), ``timesteps`` (B,), ``condition`` (B, c, ...) -> (B, k, ...)."""
        return self.unet(torch.cat([noisy_latent, condition], dim=1), timesteps)
