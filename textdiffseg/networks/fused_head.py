"""Deep supervision of the fused features (``ModelConfig.fused_seg_weight``): where is the prompt, per latent cell.

The denoiser draws the label latent from the fused image-text features. When those features do not say where a
small structure is (a tumour of a few latent cells), the denoiser learns to return an empty latent for it and no
amount of sampling brings it back. A linear head on the fused features, trained to mark the latent cells the
prompted structure touches, puts that question to the features directly (deep supervision, as nnU-Net supervises
its decoder's coarse levels). Its targets are :func:`textdiffseg.losses.cell_targets`.
"""

from __future__ import annotations

import torch
from torch import nn


class FusedPresenceHead(nn.Module):
    """1x1x1 convolution: fused features (P, c, d, h, w) -> logits (P, 1, d, h, w) of "the prompt is in this cell".

    Args:
        fused_channels: channels of the fused features.
    """

    def __init__(self, fused_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(fused_channels, 1, kernel_size=1)

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        """Per-cell logits of the prompted structure's presence."""
        return self.conv(fused)
