"""3D image encoder: CT patch -> image latent z_i (c x d x h x w) plus the intermediate-resolution skip features."""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn


class ImageEncoder(nn.Module):
    """Residual conv stages from MONAI blocks; every stage halves the resolution.

    No convolution runs at full resolution: 3x3x3 convs there dominate CPU time (PyTorch's CPU conv3d has no fast
    kernel), and the masks are decoded at half resolution and upsampled.

    Args:
        channels: channels per stage, e.g. ``(16, 32)`` -> downsampling by 4.
        out_channels: channels ``c`` of the returned latent ``z_i``.
        in_channels: image channels (one per HU window).
    """

    def __init__(self, channels: tuple[int, ...], out_channels: int, in_channels: int = 1) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        in_ch = in_channels
        for ch in channels:
            stages.append(ResidualUnit(3, in_ch, ch, strides=2, subunits=2, norm="INSTANCE", act="PRELU"))
            in_ch = ch
        self.stages = nn.ModuleList(stages)
        self.head = Convolution(3, in_ch, out_channels, kernel_size=1, conv_only=True)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``image`` (B, C, D, H, W) -> ``(z_i, skips)``; skips from the half-resolution stage onwards."""
        skips = []
        x = image
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        return self.head(x), skips[:-1]


class PooledImageEncoder(nn.Module):
    """Ablation "no image encoder": z_i is the average-pooled intensity lifted by a 1x1 conv; no skip features."""

    def __init__(self, downsample: int, out_channels: int, in_channels: int = 1) -> None:
        super().__init__()
        self.pool = nn.AvgPool3d(downsample)
        self.lift = nn.Conv3d(in_channels, out_channels, kernel_size=1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``image`` (B, C, D, H, W) -> ``(z_i, [])``."""
        return self.lift(self.pool(image)), []
