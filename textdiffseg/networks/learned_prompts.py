"""Learned prompts: what a frozen model is given to answer a structure it learned after its main training.

A site's ``/train`` often teaches one new structure from one or a few labels. Fine-tuning the whole network for it
moves every weight and costs the structures the model already knew (README, "A new structure"). A learned prompt
changes nothing the model knew: the network stays frozen, and each new structure gets

* token embeddings that replace the text encoder's tokens wherever a prompt is understood as that structure
  (textual inversion, as diffusers' ``load_textual_inversion`` does for a new concept of a frozen image generator);
  they live in the encoder's hidden space and start from the encoder's tokens of the structure's name;
* a small residual adapter on the fused image-text features of its prompts only (a 3x3x3 and a 1x1x1 convolution,
  the last starting at zero): tokens alone steer a frozen cross-attention too weakly to draw a shape the network
  never drew (on the one-label ribs task: Dice 0.18 on the training CT itself after 4 minutes, 0.34 with adapters).

Prompts of other structures get exactly the tokens and features, and so exactly the masks, they got before.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


class LearnedPrompts(nn.Module):
    """``length`` trainable token embeddings and a feature adapter per structure in ``names``.

    Args:
        names: the structures, in the order of their rows.
        length: tokens per structure.
        hidden_size: the text encoder's hidden size.
        channels: channels of the fused features the adapters act on.
    """

    def __init__(self, names: Sequence[str], length: int, hidden_size: int, channels: int) -> None:
        super().__init__()
        if len(set(names)) != len(names):
            raise ValueError(f"learned prompt names must be unique, got {list(names)}")
        if length < 1:
            raise ValueError(f"a learned prompt needs at least one token, got length {length}")
        self.names = tuple(names)
        self.tokens = nn.Parameter(torch.zeros(len(self.names), length, hidden_size))
        self.adapters = nn.ModuleList(FeatureAdapter(channels) for _ in self.names)

    def row_of(self, structure: str | None) -> int | None:
        """The row of a structure's tokens, or ``None`` when it has none."""
        return self.names.index(structure) if structure in self.names else None

    def substitute(
        self, tokens: torch.Tensor, mask: torch.Tensor, structures: Sequence[str | None]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Replace the encoder's ``(P, L, hidden)`` tokens and ``(P, L)`` mask of each prompt understood as a
        learned structure (``structures[i]``) by that structure's tokens; other prompts keep theirs exactly."""
        rows = [self.row_of(s) for s in structures]
        if all(r is None for r in rows):
            return tokens, mask
        own_length = self.tokens.shape[1]
        length = max(tokens.shape[1], own_length)
        padded = F.pad(tokens.to(self.tokens.dtype), (0, 0, 0, length - tokens.shape[1]))
        padded_mask = F.pad(mask, (0, length - mask.shape[1]))
        own_mask = torch.arange(length, device=mask.device) < own_length
        out, out_mask = [], []
        for i, row in enumerate(rows):
            if row is None:
                out.append(padded[i])
                out_mask.append(padded_mask[i])
            else:
                out.append(F.pad(self.tokens[row], (0, 0, 0, length - own_length)))
                out_mask.append(own_mask)
        return torch.stack(out), torch.stack(out_mask)

    def adapt(self, fused: torch.Tensor, structures: Sequence[str | None]) -> torch.Tensor:
        """``(P, c, d, h, w)`` fused features with each learned structure's adapter added to its prompts' rows."""
        rows = [self.row_of(s) for s in structures]
        if all(r is None for r in rows):
            return fused
        return torch.stack(
            [f if r is None else f + self.adapters[r](f[None])[0] for f, r in zip(fused, rows)]  # type: ignore[index]
        )


class FeatureAdapter(nn.Module):
    """A residual correction of fused features: 3x3x3 conv, SiLU, 1x1x1 conv (zero at the start)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(channels, channels, 3, padding=1), nn.SiLU(), nn.Conv3d(channels, channels, 1)
        )
        nn.init.zeros_(self.body[2].weight)
        nn.init.zeros_(self.body[2].bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """The correction to add to ``features`` ``(B, c, d, h, w)``."""
        return self.body(features)


def initial_tokens(name_tokens: torch.Tensor, length: int) -> torch.Tensor:
    """``(length, hidden)`` start tokens from the encoder's tokens of a structure's name: truncated, or the last
    repeated."""
    if name_tokens.shape[0] >= length:
        return name_tokens[:length].clone()
    return torch.cat([name_tokens, name_tokens[-1:].expand(length - name_tokens.shape[0], -1)])
