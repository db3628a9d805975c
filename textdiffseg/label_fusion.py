"""Per-prompt probabilities -> one ``uint8`` label map with caller-chosen values (the more confident prompt wins)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FOREGROUND_THRESHOLD = 0.5  # probability above which a voxel belongs to a prompt's mask
SLAB = 32  # rows of the first spatial axis fused at once (argmax's int64 indices stay small)


def check_label_values(values: Sequence[int], prompts: int) -> list[int]:
    """``values`` as ints after checking there is one per prompt and each is in 1..255; raises ``ValueError``."""
    if len(values) != prompts:
        raise ValueError(f"{len(values)} label values given for {prompts} prompts")
    if any(isinstance(v, bool) or not 1 <= int(v) <= 255 for v in values):
        raise ValueError(f"label values must be in 1..255, got {list(values)}")
    return [int(v) for v in values]


def label_map_from_probabilities(
    probability: np.ndarray, values: Sequence[int], threshold: float = FOREGROUND_THRESHOLD
) -> np.ndarray:
    """One ``uint8`` label map from per-prompt probabilities, built slab by slab.

    Args:
        probability: ``(P, *spatial)`` probabilities of P prompts.
        values: the output value of each prompt (1..255), e.g. ``ResolvedPrompt.value``.
        threshold: a voxel belongs to a prompt when its probability is above this.

    Returns:
        ``(*spatial)`` ``uint8`` map: 0 where no prompt is above ``threshold``; elsewhere the value of the prompt with
        the highest probability (the more confident prompt wins where masks overlap; ties go to the earlier prompt).
        Slabs of :data:`SLAB` rows keep the transient memory small: on a whole 512x512x300 CT, argmax's int64
        indices alone would be 0.6 GB.
    """
    probability = np.asarray(probability)
    if probability.ndim < 2:
        raise ValueError(f"probability {probability.shape} must be (P, *spatial)")
    lookup = np.asarray(check_label_values(values, probability.shape[0]), dtype=np.uint8)
    label_map = np.empty(probability.shape[1:], np.uint8)
    for start in range(0, label_map.shape[0], SLAB):
        slab = probability[:, start : start + SLAB]
        best = np.argmax(slab, axis=0)
        foreground = np.take_along_axis(slab, best[None], axis=0)[0] > threshold
        label_map[start : start + SLAB] = np.where(foreground, lookup[best], 0)
    return label_map
