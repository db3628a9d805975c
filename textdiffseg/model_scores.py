"""Dice of a model per structure on labelled cases: what validation and the publish gate compare.

Whole volumes through :class:`textdiffseg.inference.Segmenter` as ``/infer`` serves them (same post-processing, the
same fixed noise seed, so two models are compared on the same draws), on each case's own voxel grid, as
:func:`textdiffseg.evaluate.evaluate_cases` does but Dice only (its HD95 costs more than the inference on a CPU).
Only structures present in a case are scored (absent ones have no Dice).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from monai.transforms import EnsureChannelFirst, LoadImage

from textdiffseg.data.folders import LabelledCase
from textdiffseg.data.vocabulary import PromptVocabulary
from textdiffseg.inference import Segmenter
from textdiffseg.networks.model import TextDiffSeg
from textdiffseg.text.encoder import TextEncoder


def structure_dice(
    model: TextDiffSeg,
    encoder: TextEncoder,
    cases: Sequence[LabelledCase],
    device: str = "cpu",
    vocabulary: PromptVocabulary | None = None,
) -> dict[str, float]:
    """Mean Dice of each structure over the cases that contain it (the model is left in eval mode)."""
    if not cases:
        return {}
    segmenter = Segmenter(model, encoder, device=device, vocabulary=vocabulary)
    loader, channel_first = LoadImage(image_only=True), EnsureChannelFirst()
    scores: dict[str, list[float]] = {}
    for case in cases:
        label = np.asarray(loader(str(case.label))).round().astype(np.int32)
        present = {name: np.isin(label, values) for name, values in sorted(case.targets.items())}
        present = {name: truth for name, truth in present.items() if truth.any()}
        if not present:
            continue
        prediction = segmenter.predict(channel_first(loader(str(case.image))), list(present))
        for i, (name, truth) in enumerate(present.items()):
            scores.setdefault(name, []).append(dice(prediction.probability[i] > 0.5, truth))
    return {name: float(np.mean(values)) for name, values in sorted(scores.items())}


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice overlap of two boolean masks (1.0 when both are empty)."""
    total = int(prediction.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(prediction, truth).sum()) / total


def mean_score(scores: dict[str, float]) -> float:
    """Mean over structures (0.0 when nothing was scored)."""
    return float(np.mean(list(scores.values()))) if scores else 0.0


def validation_scorer(
    encoder: TextEncoder,
    cases: Sequence[LabelledCase],
    device: str = "cpu",
    vocabulary: PromptVocabulary | None = None,
) -> Callable[[TextDiffSeg], float]:
    """A ``TrainHooks.validate`` function: mean Dice over the structures of the held-out ``cases``."""

    def validate(model: TextDiffSeg) -> float:
        return mean_score(structure_dice(model, encoder, cases, device, vocabulary))

    return validate
