"""Helpers for serving predictions: multi-prompt label maps, uncertainty summaries, label names -> training targets.

These are the numeric and mapping steps a server (the MONAI Label app) needs around
:meth:`textdiffseg.service.SegmentationService.segment`, kept here so that the app stays a thin adapter:

* :func:`label_map_from_probabilities` turns per-prompt probabilities into one label map whose values are chosen
  by the caller (vocabulary indices), the most confident prompt winning where masks overlap;
* :func:`prompt_uncertainty`, :func:`voxel_uncertainty` and :func:`image_uncertainty` reduce the per-prompt binary
  entropy of the diffusion ensemble to per-prompt, per-voxel and per-image numbers (active learning ranks images by
  the last one);
* :func:`targets_from_label_info` maps the ``label_info`` that annotation clients store with a label
  (``[{"name": ..., "idx": ...}]``) to the ``{structure: (label values,)}`` targets that training uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from textdiffseg.data.label_maps import targets_from_label_names
from textdiffseg.data.vocabulary import PromptVocabulary

FOREGROUND_THRESHOLD = 0.5  # probability above which a voxel belongs to a prompt's mask
REGION_THRESHOLD = 0.05  # probability above which a voxel counts towards uncertainty summaries
IGNORED_LABEL_NAMES = frozenset({"background", "foreground_scribbles", "background_scribbles"})


def _check_pair(probability: np.ndarray, uncertainty: np.ndarray) -> None:
    if probability.shape != uncertainty.shape or probability.ndim < 2:
        raise ValueError(
            f"probability {probability.shape} and uncertainty {uncertainty.shape} must both be (P, *spatial)"
        )


def label_map_from_probabilities(
    probability: np.ndarray, values: Sequence[int], threshold: float = FOREGROUND_THRESHOLD
) -> np.ndarray:
    """One ``uint8`` label map from per-prompt probabilities.

    Args:
        probability: ``(P, *spatial)`` probabilities of P prompts.
        values: the output value of each prompt (1..255), e.g. ``ResolvedPrompt.value``.
        threshold: a voxel belongs to a prompt when its probability is above this.

    Returns:
        ``(*spatial)`` ``uint8`` map: 0 where no prompt is above ``threshold``; elsewhere the value of the prompt with
        the highest probability (the more confident prompt wins where masks overlap; ties go to the earlier prompt).
    """
    probability = np.asarray(probability)
    if probability.ndim < 2 or probability.shape[0] != len(values):
        raise ValueError(f"probability {probability.shape} must be (P, *spatial) with P = {len(values)} values")
    if any(not 1 <= int(v) <= 255 for v in values):
        raise ValueError(f"label values must be in 1..255, got {list(values)}")
    lookup = np.asarray([int(v) for v in values], dtype=np.uint8)
    best = np.argmax(probability, axis=0)
    foreground = np.take_along_axis(probability, best[None], axis=0)[0] > threshold
    return np.where(foreground, lookup[best], 0).astype(np.uint8)


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


def _label_info_pairs(label_info: object) -> list[tuple[int, str]]:
    """``(value, name)`` pairs from ``[{"name", "idx"}]`` (MONAI Label clients) or ``{name: idx}``."""
    if isinstance(label_info, Mapping):
        items: list[object] = [{"name": k, "idx": v} for k, v in label_info.items()]
    elif isinstance(label_info, list | tuple):
        items = list(label_info)
    else:
        return []
    pairs = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        name, idx = item.get("name"), item.get("idx")
        if not isinstance(name, str) or isinstance(idx, bool):
            continue
        try:
            value = int(idx)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        pairs.append((value, name))
    return pairs


def targets_from_label_info(
    label_info: object, vocabulary: PromptVocabulary | None = None
) -> dict[str, tuple[int, ...]]:
    """Training targets of a label map described by a client's ``label_info``.

    Args:
        label_info: what MONAI Label clients save with a label: ``[{"name": "Liver", "idx": 1}, ...]`` (3D Slicer),
            or a ``{name: idx}`` mapping. Malformed entries, value 0 and names like ``background`` are ignored.
        vocabulary: when given, names that are known synonyms become their canonical vocabulary name
            ("Hepatic lesion" -> "liver tumor"); other names are kept as free text (lower case).

    Returns:
        ``{structure name: (label values,)}`` as :func:`textdiffseg.data.label_maps.targets_from_label_names`
        builds it (an organ also covers the lesions named after it); empty when nothing usable is described.
    """
    names: dict[int, str] = {}
    for value, raw in _label_info_pairs(label_info):
        cleaned = " ".join(raw.split())
        if value <= 0 or not cleaned or cleaned.lower() in IGNORED_LABEL_NAMES:
            continue
        canonical = vocabulary.canonical(cleaned) if vocabulary is not None else None
        names[value] = canonical or cleaned.lower()
    return targets_from_label_names(names)
