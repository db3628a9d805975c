"""Click branch: per-prompt positive/negative click maps -> features added to the fused image-text features (what the
denoiser sees) and to each label-decoder level.

Every convolution is bias-free and the activations map 0 to 0, so an empty click map gives exactly zero features: a
prompt without clicks is conditioned exactly as by text alone, whether or not the branch runs. The last layers start
at zero (both parts), so a model given the branch (``textdiffseg.click_branch.add_click_branch``) computes exactly
what it did until training moves them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ClickEncoder(nn.Module):
    """Click maps ``(P, k, D, H, W)`` at the model grid -> ``(P, out, D/f, H/f, W/f)``, ``f = 2 ** stages``.

    Args:
        in_channels: click map channels (2: positive, negative).
        out_channels: the fused feature channels ``c``.
        stages: stride-2 stages (as many as the image encoder has).
        width: channels of the hidden layers.
    """

    def __init__(self, in_channels: int, out_channels: int, stages: int, width: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = in_channels
        for _ in range(stages):
            layers += [nn.Conv3d(ch, width, kernel_size=3, stride=2, padding=1, bias=False), nn.LeakyReLU(0.1)]
            ch = width
        layers += [nn.Conv3d(ch, width, kernel_size=3, padding=1, bias=False), nn.LeakyReLU(0.1)]
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv3d(width, out_channels, kernel_size=1, bias=False)
        nn.init.zeros_(self.out.weight)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """Features to add to the fused features (zero where the maps are zero far around)."""
        return self.out(self.body(maps))


class ClickDecoderBias(nn.Module):
    """Click maps -> one addition per label-decoder level (at that level's resolution), zero at start.

    The label decoder draws mask boundaries from the image skips, and a trained decoder barely moves when only the
    fused features change; this gives the clicks a direct, local path to the decoder as well.

    Args:
        in_channels: click map channels.
        widths: channels of each decoder level after upsampling (``LabelDecoder.level_widths``).
    """

    def __init__(self, in_channels: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv3d(in_channels, w, kernel_size=3, padding=1, bias=False) for w in widths)
        for conv in self.convs:
            nn.init.zeros_(conv.weight)

    def forward(self, maps: torch.Tensor, level: int, size: tuple[int, ...]) -> torch.Tensor:
        """The addition of decoder level ``level`` at spatial ``size`` (maps max-pooled to it, so no click is lost)."""
        pooled = maps if tuple(maps.shape[2:]) == tuple(size) else F.adaptive_max_pool3d(maps, size)
        return self.convs[level](pooled)
