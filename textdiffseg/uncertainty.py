"""Summaries of the diffusion ensemble's per-prompt binary entropy: per voxel, per prompt and per image.

Active learning ranks images by :func:`image_uncertainty`; ``/infer`` reports :func:`prompt_uncertainty` and can
save :func:`voxel_uncertainty` as a map.
"""

from __future__ import annotations

import numpy as np

REGION_THRESHOLD = 0.05  # probability above which a voxel counts towards uncertainty summaries


def _check_pair(probability: np.ndarray, uncertainty: np.ndarray) -> None:
    if probability.shape != uncertainty.shape or probability.ndim < 2:
        raise ValueError(
            f"probability {probability.shape} and uncertainty {uncertainty.shape} must both be (P, *spatial)"
        )


def voxel_uncertainty(uncertainty: np.ndarray) -> np.ndarray:
    """``(*spatial)`` ``float32`` map: the largest per-prompt entropy at each voxel (bits, 0..1)."""
    uncertainty = np.asarray(uncertainty)
    if uncertainty.ndim < 2:
        raise ValueError(f"uncertainty must be (P, *spatial), got {uncertainty.shape}")
    return uncertainty.max(axis=0).astype(np.float32)


def prompt_uncertainty(
    probability: np.ndarray, uncertainty: np.ndarray, threshold: float = REGION_THRESHOLD
) -> list[float]:
    """Mean entropy of each prompt over the voxels where that prompt's probability exceeds ``threshold``.

    A prompt found nowhere (no voxel above ``threshold``) gets 0.0: the model is sure the structure is absent.
    """
    probability, uncertainty = np.asarray(probability), np.asarray(uncertainty)
    _check_pair(probability, uncertainty)
    scores = []
    for p, u in zip(probability, uncertainty):
        region = p > threshold
        scores.append(float(u[region].mean()) if region.any() else 0.0)
    return scores


def image_uncertainty(probability: np.ndarray, uncertainty: np.ndarray, threshold: float = REGION_THRESHOLD) -> float:
    """One uncertainty score per image, for ranking images in active learning.

    The mean, over the voxels where any prompt's probability exceeds ``threshold``, of the largest per-prompt
    entropy at that voxel (bits, 0..1). Restricting to that region keeps large, confidently empty backgrounds from
    diluting the score. An image where no prompt reaches ``threshold`` anywhere scores 0.0.
    """
    probability, uncertainty = np.asarray(probability), np.asarray(uncertainty)
    _check_pair(probability, uncertainty)
    region = (probability > threshold).any(axis=0)
    if not region.any():
        return 0.0
    return float(voxel_uncertainty(uncertainty)[region].mean())
