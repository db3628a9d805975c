"""Publish only what is not worse: a retrained candidate against the model being served.

Both models are scored (:func:`textdiffseg.model_scores.structure_dice`, whole volumes, the same noise seed) on

* the **validation share** of the site's labels (when there is one), and
* a fixed **regression set**: phantoms of a fixed seed that no run trains on (``textdiffseg.finetune``), prompted
  with the structures the served model records as trained.

The candidate is published only if no structure the served model knew drops by more than ``tolerance`` Dice in
either set. Structures new to the candidate cannot block it (the served model scores them 0 or not at all).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from textdiffseg.checkpoint import load_for_inference
from textdiffseg.data.folders import LabelledCase
from textdiffseg.data.vocabulary import PromptVocabulary
from textdiffseg.model_scores import structure_dice
from textdiffseg.text.encoder import TextEncoder

logger = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 0.02
SETS = ("validation", "regression")


@dataclass
class GateDecision:
    """Whether to publish, why, and the scores behind it (``{set: {structure: Dice}}`` per model)."""

    publish: bool
    reason: str
    served: dict[str, dict[str, float]] = field(default_factory=dict)
    candidate: dict[str, dict[str, float]] = field(default_factory=dict)
    drops: dict[str, float] = field(default_factory=dict)  # "set/structure" -> served - candidate, over tolerance

    def as_stats(self) -> dict[str, object]:
        """Entries for ``train_stats``."""

        def rounded(scores: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
            return {s: {k: round(v, 4) for k, v in d.items()} for s, d in scores.items()}

        return {
            "publish": self.publish,
            "reason": self.reason,
            "served_dice": rounded(self.served),
            "candidate_dice": rounded(self.candidate),
            "drops": {k: round(v, 4) for k, v in self.drops.items()},
        }


def compare(
    served: Mapping[str, Mapping[str, float]],
    candidate: Mapping[str, Mapping[str, float]],
    known: Iterable[str],
    tolerance: float = DEFAULT_TOLERANCE,
) -> GateDecision:
    """The decision from both models' scores: refuse if a known structure drops by more than ``tolerance``."""
    known_set = set(known)
    drops = {}
    for name in SETS:
        for structure, before in served.get(name, {}).items():
            after = candidate.get(name, {}).get(structure, 0.0)
            if structure in known_set and before - after > tolerance:
                drops[f"{name}/{structure}"] = before - after
    checked = sum(1 for name in SETS for s in served.get(name, {}) if s in known_set)
    if drops:
        worst = ", ".join(
            f"{key} {served[key.split('/')[0]][key.split('/', 1)[1]]:.3f} -> "
            f"{candidate.get(key.split('/')[0], {}).get(key.split('/', 1)[1], 0.0):.3f}"
            for key in sorted(drops, key=drops.get, reverse=True)
        )
        reason = f"not published: Dice dropped by more than {tolerance:.3f} on {worst}; the served model is kept"
        return GateDecision(False, reason, dict(served), dict(candidate), drops)
    reason = f"published: no known structure dropped by more than {tolerance:.3f} Dice ({checked} checked)"
    return GateDecision(True, reason, dict(served), dict(candidate), {})


def score_sets(
    checkpoint: Path,
    sets: Mapping[str, Sequence[LabelledCase]],
    device: str = "cpu",
    vocabulary: PromptVocabulary | None = None,
    encoders: MutableMapping[str, TextEncoder] | None = None,
) -> dict[str, dict[str, float]]:
    """A checkpoint's Dice per structure on each named set of cases."""
    model, encoder = load_for_inference(checkpoint, device=device, encoder_cache=encoders)
    return {name: structure_dice(model, encoder, cases, device, vocabulary) for name, cases in sets.items() if cases}


def publish_gate(
    served: Path | None,
    candidate: Path,
    validation: Sequence[LabelledCase],
    regression: Sequence[LabelledCase],
    known: Iterable[str],
    tolerance: float = DEFAULT_TOLERANCE,
    device: str = "cpu",
    vocabulary: PromptVocabulary | None = None,
) -> GateDecision:
    """Score both checkpoints and decide (no served model: publish)."""
    if served is None:
        return GateDecision(True, "published: no model was served before")
    sets = {"validation": list(validation), "regression": list(regression)}
    encoders: dict[str, TextEncoder] = {}
    before = score_sets(served, sets, device, vocabulary, encoders)
    after = score_sets(candidate, sets, device, vocabulary, encoders)
    decision = compare(before, after, known, tolerance)
    logger.info("publish gate: %s", decision.reason)
    return decision
