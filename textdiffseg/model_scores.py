"""Dice of a model per structure on labelled cases: what validation and the publish gate compare.

Whole volumes through :class:`textdiffseg.inference.Segmenter` as ``/infer`` serves them (same post-processing, the
same fixed noise seed, so two models are compared on the same draws), via :func:`textdiffseg.evaluate.evaluate_cases`.
Only structures present in a case are scored (absent ones have no Dice).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from textdiffseg.data.folders import LabelledCase
from textdiffseg.data.vocabulary import PromptVocabulary
from textdiffseg.evaluate import evaluate_cases
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
    scores = evaluate_cases(segmenter, list(cases))
    return {name: float(np.mean(s.dice)) for name, s in sorted(scores.items()) if s.dice}


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
