"""3D label encoder / decoder: a binary mask <-> a k-channel "shape-aware" latent at the image latent's resolution.

The decoder also sees the image encoder's skip features, so masks keep sharp boundaries although the latent is
coarse (our choice; the paper does not say how its decoder is built). It ends at half resolution and the logits are
upsampled trilinearly: full-resolution 3D convolutions would cost most of the CPU time for little gain.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from torch import nn

FOREGROUND_PRIOR_LOGIT = -3.0


class LabelEncoder(nn.Module):
    """Mask (B, 1, D, H, W) -> latent (B, k, D/f, H/f, W/f) in [-1, 1] (tanh), f = 2 ** len(channels)."""

    def __init__(self, channels: tuple[int, ...], latent_channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 1
        for ch in channels:
            layers.append(Convolution(3, in_ch, ch, strides=2, norm="INSTANCE", act="PRELU"))
            in_ch = ch
        layers.append(Convolution(3, in_ch, latent_channels, kernel_size=1, conv_only=True))
        self.net = nn.Sequential(*layers)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        """Encode a float mask in {0, 1}."""
        return torch.tanh(self.net(mask * 2.0 - 1.0))


class PooledLabelEncoder(nn.Module):
    """Ablation "no label encoder": the latent is the average-pooled mask rescaled to [-1, 1] (1 channel)."""

    def __init__(self, downsample: int) -> None:
        super().__init__()
        self.pool = nn.AvgPool3d(downsample)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        """Pool and rescale."""
        return self.pool(mask) * 2.0 - 1.0


class LabelDecoder(nn.Module):
    """Latent (B, k, d, h, w) + image skips (coarse to fine) -> mask logits (B, 1, D, H, W).

    Each level upsamples by 2, adds a 1x1 projection of the image skip and applies one 3x3 conv, up to half
    resolution; the logits are then upsampled trilinearly to full resolution. The skip projection
    ``conv(concat(x, skip)) = conv_x(x) + conv_s(skip)`` is split so the skip part runs once per window and is
    broadcast over all prompts.

    Args:
        latent_channels: k.
        skip_channels: channels of the image skips, finest (half resolution) first; empty for the pooled-image
            ablation, then the decoder upsamples the latent alone.
        downsample: factor between the latent and the image grid (a power of two, at least 2).
        width: decoder width at the coarsest level; it halves per level down to 8.
    """

    def __init__(self, latent_channels: int, skip_channels: tuple[int, ...], downsample: int, width: int = 16) -> None:
        super().__init__()
        self.levels = downsample.bit_length() - 2  # upsampling steps from the latent to half resolution
        widths = [max(8, width >> level) for level in range(self.levels + 1)]
        self.level_widths = tuple(widths[1:])  # channels after each upsampling step
        self.stem = Convolution(3, latent_channels, widths[0], norm="INSTANCE", act="PRELU")
        self.skip_proj = (
            nn.ModuleList(
                nn.Conv3d(skip_channels[-1 - level], widths[level + 1], kernel_size=1) for level in range(self.levels)
            )
            if skip_channels
            else None
        )
        self.ups = nn.ModuleList(
            Convolution(3, widths[level], widths[level + 1], norm="INSTANCE", act="PRELU")
            for level in range(self.levels)
        )
        self.head = nn.Conv3d(widths[-1], 1, kernel_size=1)
        # Start from a low foreground prior (p ~ 0.05): most voxels are background for any prompt, and Adam would
        # otherwise spend hundreds of steps walking the bias down from p = 0.5.
        nn.init.constant_(self.head.bias, FOREGROUND_PRIOR_LOGIT)

    def forward(
        self,
        latent: torch.Tensor,
        skips: list[torch.Tensor],
        output_size: tuple[int, ...] | None = None,
        level_bias: Callable[[int, tuple[int, ...]], torch.Tensor] | None = None,
        level_film: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Decode to ``output_size`` (default: twice the finest decoder level).

        ``skips`` may hold one entry per image (broadcast over prompts) or one per latent. ``level_bias(level,
        size)`` gives an addition to each level next to its skip projection (the click branch's). ``level_film(level,
        features)`` modulates each level's features per latent between normalisation and activation (the prompt
        FiLM, ``textdiffseg.networks.prompt_film``).
        """
        x = self.stem(latent)
        for level, block in enumerate(self.ups):
            skip = skips[-1 - level] if skips else None
            target = skip.shape[2:] if skip is not None else tuple(s * 2 for s in x.shape[2:])
            x = F.interpolate(x, size=target, mode="trilinear", align_corners=False)
            x = block.conv(x)  # norm and activation follow the skip
            if skip is not None and self.skip_proj is not None:
                x = x + self.skip_proj[level](skip)
            if level_bias is not None:
                x = x + level_bias(level, tuple(x.shape[2:]))
            x = block.adn(x) if level_film is None else block.adn.A(level_film(level, block.adn.N(x)))
        logits = self.head(x)
        size = output_size or tuple(s * 2 for s in logits.shape[2:])
        return F.interpolate(logits, size=size, mode="trilinear", align_corners=False)
