"""Prompt FiLM in the label decoder: every decoder level's normalised features scaled and shifted per prompt.

Without it the decoder sees the prompt only through the coarse label latent (a quarter of the working resolution),
and its image skips are the same for every prompt: a lesion a voxel or two wide in that latent has to be found by the
denoiser at the latent's resolution. With it, each prompt's pooled text scales and shifts the channels of every
decoder level between its normalisation and its activation (feature-wise linear modulation, FiLM; conditional
normalisation as in AdaIN), so a prompt picks which fine image features its mask is drawn from: "liver tumor" can
weight a dark-spot feature that "liver" ignores. Our addition (the paper does not describe its decoder); it starts
as the identity (zero-initialised), so switching it on changes nothing a model computes before it is trained.
"""

from __future__ import annotations

import torch
from torch import nn


class PromptFiLM(nn.Module):
    """Pooled prompt text -> per decoder level, a scale ``1 + gamma`` and a shift ``beta`` of its channels.

    Args:
        text_dim: width of the projected text tokens (``ModelConfig.text_dim``).
        widths: channels of each decoder level after upsampling (``LabelDecoder.level_widths``).
    """

    def __init__(self, text_dim: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.films = nn.ModuleList(nn.Linear(text_dim, 2 * w) for w in widths)
        for film in self.films:
            nn.init.zeros_(film.weight)
            nn.init.zeros_(film.bias)

    def forward(self, text: torch.Tensor, level: int, features: torch.Tensor) -> torch.Tensor:
        """``features`` (1 or P, w, ...) of decoder level ``level`` modulated by ``text`` (P, text_dim)."""
        gamma, beta = self.films[level](text).chunk(2, dim=1)
        shape = (*gamma.shape, *([1] * (features.dim() - 2)))
        return features * (1.0 + gamma.view(shape)) + beta.view(shape)
