"""3D cross-modal attention (eq. 2): z_fused = z_i + reshape(softmax(Q K^T / sqrt(d_k)) V).

Q comes from the image voxels, K and V from the text tokens. Written here rather than taken from MONAI because
MONAI's ``CrossAttentionBlock`` (1.5) accepts no key padding mask, and prompts of different lengths are batched.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CrossModalAttention3D(nn.Module):
    """Multi-head attention of every voxel of ``z_i`` over the text tokens, added back residually.

    Args:
        channels: channels ``c`` of ``z_i``.
        text_dim: width of the (projected) text tokens.
        heads: number of attention heads; ``channels`` must be divisible by it.
    """

    def __init__(self, channels: int, text_dim: int, heads: int) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.heads = heads
        self.norm = nn.GroupNorm(1, channels)
        self.q = nn.Linear(channels, channels, bias=False)
        self.k = nn.Linear(text_dim, channels, bias=False)
        self.v = nn.Linear(text_dim, channels, bias=False)
        self.out = nn.Linear(channels, channels)

    def forward(self, z_image: torch.Tensor, tokens: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        """Fuse text into image features.

        Args:
            z_image: (B or 1, c, d, h, w); a single volume is shared by all P prompts without copying.
            tokens: (P, L, text_dim) projected text tokens.
            token_mask: (P, L) boolean, True for real tokens; padding gets no attention weight.

        Returns:
            (P, c, d, h, w) fused features.
        """
        p = tokens.shape[0]
        b, c, *spatial = z_image.shape
        if b not in (1, p):
            raise ValueError(f"image batch {b} must be 1 or equal the prompt batch {p}")
        voxels = self.norm(z_image).flatten(2).transpose(1, 2)  # (B, N, c)
        head_dim = c // self.heads
        q = self.q(voxels).view(b, -1, self.heads, head_dim).transpose(1, 2).expand(p, -1, -1, -1)
        k = self.k(tokens).view(p, -1, self.heads, head_dim).transpose(1, 2)
        v = self.v(tokens).view(p, -1, self.heads, head_dim).transpose(1, 2)
        attn_mask = token_mask[:, None, None, :]  # (P, 1, 1, L) broadcast over heads and voxels
        fused = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (P, heads, N, head_dim)
        fused = self.out(fused.transpose(1, 2).reshape(p, -1, c))
        return z_image + fused.transpose(1, 2).reshape(p, c, *spatial)


def masked_token_mean(tokens: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
    """Mean of token states ``(P, L, D)`` over the real tokens (``token_mask`` (P, L) True) -> ``(P, D)``."""
    weights = token_mask.to(tokens.dtype).unsqueeze(-1)
    return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class PooledTextBias(nn.Module):
    """Ablation "no text fusion": the masked mean of the text tokens added to every voxel as a channel bias."""

    def __init__(self, channels: int, text_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(text_dim, channels)

    def forward(self, z_image: torch.Tensor, tokens: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        """Same signature as :class:`CrossModalAttention3D`."""
        bias = self.proj(masked_token_mean(tokens, token_mask))
        return z_image + bias.view(*bias.shape, 1, 1, 1)
