"""The publish gate: a retrained model is published only if no structure the served model knew got worse."""

from __future__ import annotations

import pytest

from textdiffseg.publish_gate import compare

SERVED = {"validation": {"liver": 0.80, "aorta": 0.0}, "regression": {"liver": 0.90, "spleen": 0.70}}


def test_a_candidate_within_the_tolerance_is_published() -> None:
    candidate = {"validation": {"liver": 0.79, "aorta": 0.6}, "regression": {"liver": 0.885, "spleen": 0.75}}
    decision = compare(SERVED, candidate, known=["liver", "spleen"], tolerance=0.02)
    assert decision.publish and decision.drops == {}
    assert decision.reason.startswith("published: no known structure dropped by more than 0.020 Dice (3 checked)")


def test_a_known_structure_dropping_beyond_the_tolerance_blocks_publication() -> None:
    candidate = {"validation": {"liver": 0.80, "aorta": 0.6}, "regression": {"liver": 0.90, "spleen": 0.60}}
    decision = compare(SERVED, candidate, known=["liver", "spleen"], tolerance=0.02)
    assert not decision.publish and decision.drops == {"regression/spleen": pytest.approx(0.10)}
    assert "regression/spleen 0.700 -> 0.600" in decision.reason and "served model is kept" in decision.reason
    assert decision.as_stats()["candidate_dice"]["validation"]["aorta"] == 0.6


def test_new_structures_never_block_and_a_missing_known_one_counts_as_zero() -> None:
    served = {"validation": {"aorta": 0.30}, "regression": {"spleen": 0.70}}
    candidate = {"validation": {"aorta": 0.0}, "regression": {}}
    decision = compare(served, candidate, known=["spleen"], tolerance=0.05)  # aorta is new: its drop is ignored
    assert not decision.publish and list(decision.drops) == ["regression/spleen"]
