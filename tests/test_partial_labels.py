"""Partial-label (exclusion) prompts: a structure a case does not annotate, supervised only on the voxels of other,
disjoint structures it does annotate (``PromptedPatchSampler(exclusion_fraction)``, ``exclusion_penalty``)."""

from __future__ import annotations

from pathlib import Path

import torch

from textdiffseg import train
from textdiffseg.data.vocabulary import PromptVocabulary
from textdiffseg.launch import options_to_argv
from textdiffseg.losses import UNKNOWN, JointLoss, exclusion_penalty
from textdiffseg.train_data import PreparedCase, PromptedPatchSampler, is_lesion
from textdiffseg.train_loop import TrainOptions

SHAPE = (16, 16, 16)


def _case(case_id: str, targets: dict[str, tuple[int, ...]], blocks: dict[int, tuple[slice, ...]]) -> PreparedCase:
    label = torch.zeros(SHAPE, dtype=torch.int16)
    for value, box in blocks.items():
        label[box] = value
    present = frozenset(n for n, v in targets.items() if torch.isin(label, torch.tensor(v, dtype=label.dtype)).any())
    return PreparedCase(case_id, torch.rand(1, *SHAPE), label, targets, present)


LOW, HIGH = (slice(0, 8),) * 3, (slice(8, 16),) * 3
# an abdomen annotating liver, left lung and a liver tumour inside the liver; a chest annotating only the lung;
# a heart-only case (heart is never annotated with liver or lung, so nothing is known about it elsewhere)
ABDOMEN = _case("abdomen", {"liver": (1, 3), "left lung": (2,), "liver tumor": (3,)}, {1: LOW, 2: HIGH})
CHEST = _case("chest", {"left lung": (1,)}, {1: HIGH})
HEART = _case("heart_only", {"heart": (1,)}, {1: LOW})


def _sampler(fraction: float, seed: int = 0) -> PromptedPatchSampler:
    return PromptedPatchSampler(
        [ABDOMEN, CHEST, HEART], PromptVocabulary.load(None), SHAPE, 4, seed=seed, exclusion_fraction=fraction
    )


def test_exclusions_come_only_from_disjoint_structures_annotated_together() -> None:
    sampler = _sampler(0.5)
    by_case = dict(zip((c.case_id for c in sampler.cases), sampler._exclusions))
    # the chest's lung voxels are known not to be liver (liver and left lung never share a value in the abdomen)
    assert by_case["chest"] == {"liver": (1,)}
    # no lesion is ever excluded (a tumour may lie in an organ whose label does not name it); nothing is known of
    # the heart, which no case annotates together with the others
    assert "liver tumor" not in by_case["chest"] and "heart" not in by_case["chest"]
    assert by_case["heart_only"] == {} and by_case["abdomen"] == {}
    assert is_lesion("liver tumor") and is_lesion("Lung Nodule") and not is_lesion("liver")


def test_exclusion_targets_are_zero_on_known_voxels_and_unknown_elsewhere() -> None:
    sampler = _sampler(1.0)
    seen = 0
    for _ in range(40):
        _, prompts, targets = sampler.sample()
        for prompt, target in zip(prompts, targets[:, 0]):
            if (target == UNKNOWN).any():
                seen += 1
                lung = torch.zeros(SHAPE, dtype=torch.bool)
                lung[HIGH] = True
                assert torch.equal(target == 0, lung)
                assert prompt in PromptVocabulary.load(None).prompts_for("liver")
    assert seen > 10, "the chest case draws liver exclusion prompts"
    # the default draws exactly what the sampler drew before the option existed
    a, b = (
        _sampler(0.0, seed=3),
        PromptedPatchSampler([ABDOMEN, CHEST, HEART], PromptVocabulary.load(None), SHAPE, 4, seed=3),
    )
    for _ in range(5):
        x, y = a.sample(), b.sample()
        assert torch.equal(x[0], y[0]) and x[1] == y[1] and torch.equal(x[2], y[2])
        assert not (x[2] == UNKNOWN).any()


def test_exclusion_penalty_ignores_unknown_voxels_and_punishes_paint_on_known_ones() -> None:
    target = torch.full((1, 1, *SHAPE), UNKNOWN)
    target[(0, 0, *HIGH)] = 0.0
    logits = torch.full((1, 1, *SHAPE), -8.0, requires_grad=True)
    with torch.no_grad():
        logits[(0, 0, *LOW)] = 8.0  # paint where nothing is known
    quiet = exclusion_penalty(logits, target)
    quiet.backward()
    assert float(quiet) < 0.05
    assert torch.all(logits.grad[(0, 0, *LOW)] == 0), "unknown voxels get no gradient"
    painted = torch.full((1, 1, *SHAPE), -8.0)
    painted[(0, 0, *HIGH)] = 8.0  # paint where the structure is known to be absent
    assert float(exclusion_penalty(painted, target)) > 1.0


def test_joint_loss_gives_exclusion_prompts_no_denoising_or_reconstruction_term() -> None:
    loss = JointLoss()
    full = torch.zeros(1, 1, *SHAPE)
    full[(0, 0, *LOW)] = 1.0
    partial = torch.full((1, 1, *SHAPE), UNKNOWN)
    partial[(0, 0, *HIGH)] = 0.0
    logits = torch.randn(2, 1, *SHAPE, generator=torch.Generator().manual_seed(0))
    latent = torch.zeros(2, 2, 4, 4, 4)
    off = latent.clone()
    off[1] = 100.0  # a wild denoiser output on the exclusion prompt must not count
    both = loss(logits, logits, torch.cat([full, partial]), off, latent)
    alone = loss(logits[:1], logits[:1], full, latent[:1], latent[:1])
    assert float(both["denoise"]) == 0.0 and torch.isclose(both["recon"], alone["recon"])
    expected = 0.5 * alone["seg"] + 0.5 * exclusion_penalty(logits[1:], partial)
    assert torch.isclose(both["seg"], expected)
    # all prompts fully labelled: the loss is what it was (Dice + BCE + absent penalty, recon, MSE)
    plain = loss(logits[:1], logits[:1], full, latent[:1] + 0.5, latent[:1])
    assert torch.isclose(plain["seg"], loss.seg(logits[:1], full)) and float(plain["denoise"]) == 0.25


def test_flags_round_trip() -> None:
    opts = TrainOptions(
        data=Path("/a"),
        out=Path("/o"),
        exclusion_fraction=0.25,
        scan_range_prob=0.4,
        forget_untrained=True,
        structures=("liver",),
    )
    assert train.parse_args(options_to_argv(opts)) == opts
