"""Tissue looks (issue 12): per-structure HU, non-contrast, enhancement scale and little fat, on HU before windowing."""

from __future__ import annotations

import pytest
import torch

from textdiffseg.augment import PatchAugmenter
from textdiffseg.config import MULTI_WINDOWS
from textdiffseg.tissue_augment import TissueIntensityAugmenter

AIR, FAT, MUSCLE, LIVER, SPLEEN, BONE = -1000.0, -100.0, 50.0, 110.0, 150.0, 1000.0


def _torso() -> tuple[torch.Tensor, torch.Tensor]:
    """A ``(1, 32, 32, 16)`` HU patch: air outside, fat, muscle, a liver (label 1), a spleen (label 2), a bone rod."""
    hu = torch.full((1, 32, 32, 16), AIR)
    hu[:, 2:30, 2:30] = FAT
    hu[:, 4:8, 4:28] = MUSCLE
    hu[:, 10:18, 8:20] = LIVER
    hu[:, 20:26, 8:20] = SPLEEN
    hu[:, 14:16, 24:26] = BONE
    label = torch.zeros_like(hu)
    label[:, 10:18, 8:20] = 1
    label[:, 20:26, 8:20] = 2
    return hu, label


def _only(look: str, seed: int = 0) -> TissueIntensityAugmenter:
    """An augmenter that always changes the patch, with only ``look`` switched on."""
    return TissueIntensityAugmenter(
        1.0,
        structure_shift_hu=60.0 if look == "shift" else 0.0,
        non_contrast_prob=float(look == "non-contrast"),
        enhancement_prob=float(look == "enhancement"),
        little_fat_prob=float(look == "little fat"),
        seed=seed,
    )


def test_each_structure_moves_by_one_shift_of_its_own_and_nothing_else_moves() -> None:
    hu, label = _torso()
    shifts = []
    for seed in range(6):
        out = _only("shift", seed)(hu, label)
        for value in (1, 2):
            delta = (out - hu)[label == value]
            assert torch.allclose(delta, delta[0].expand_as(delta)), "one shift per structure"
            assert -60.0 <= float(delta[0]) <= 60.0
        assert torch.equal(out[label == 0], hu[label == 0]), "unlabelled tissue and air untouched"
        shifts.append(float((out - hu)[label == 1][0]) - float((out - hu)[label == 2][0]))
    assert max(shifts) - min(shifts) > 20.0, "the two organs move apart and together across patches"


def test_non_contrast_pulls_organs_towards_40_hu_and_leaves_air_fat_and_dense_bone() -> None:
    hu, label = _torso()
    out = _only("non-contrast")(hu, label)
    liver, spleen = float(out[label == 1][0]), float(out[label == 2][0])
    assert 40.0 + 0.15 * (LIVER - 40.0) - 1e-3 <= liver <= 40.0 + 0.5 * (LIVER - 40.0) + 1e-3
    assert abs(spleen - liver) < 0.5 * (SPLEEN - LIVER) + 1e-3, "less contrast between enhancing organs"
    for value in (AIR, FAT, BONE):
        assert torch.equal(out[hu == value], hu[hu == value])


def test_enhancement_scale_moves_only_what_is_brighter_than_100_hu() -> None:
    hu, label = _torso()
    ratios = set()
    for seed in range(5):
        out = _only("enhancement", seed)(hu, label)
        assert torch.equal(out[hu < 100.0], hu[hu < 100.0])
        ratio = (float(out[label == 2][0]) - 100.0) / (SPLEEN - 100.0)
        assert 0.6 - 1e-4 <= ratio <= 1.8 + 1e-4
        assert float(out[hu == BONE][0]) == pytest.approx(100.0 + ratio * (BONE - 100.0), rel=1e-5)
        ratios.add(round(ratio, 3))
    assert len(ratios) > 1, "a different phase per patch"


def test_little_fat_brings_fat_towards_soft_tissue_and_leaves_air() -> None:
    hu, label = _torso()
    out = _only("little fat")(hu, label)
    fat = out[hu == FAT]
    assert torch.allclose(fat, fat[0].expand_as(fat))
    assert FAT + 0.3 * (30.0 - FAT) - 1e-3 <= float(fat[0]) <= FAT + 0.85 * (30.0 - FAT) + 1e-3
    assert torch.equal(out[hu == AIR], hu[hu == AIR])
    assert torch.equal(out[label > 0], hu[label > 0])


def test_probability_zero_and_seeds() -> None:
    hu, label = _torso()
    assert TissueIntensityAugmenter(0.0)(hu, label) is hu
    a, b = TissueIntensityAugmenter(1.0, seed=4), TissueIntensityAugmenter(1.0, seed=4)
    assert all(torch.equal(a(hu, label), b(hu, label)) for _ in range(5)), "seeded"
    assert not torch.equal(hu, TissueIntensityAugmenter(1.0, seed=4)(hu, label)), "a patch is changed"
    with pytest.raises(ValueError, match="probability"):
        TissueIntensityAugmenter(1.5)
    with pytest.raises(ValueError, match="structure_shift_hu"):
        TissueIntensityAugmenter(0.5, structure_shift_hu=-1.0)


def test_patch_augmenter_changes_the_image_not_the_label_and_keeps_its_other_draws() -> None:
    hu, label = _torso()
    windows = ((-200.0, 300.0), *MULTI_WINDOWS)
    plain = PatchAugmenter(windows, seed=9)
    looks = PatchAugmenter(windows, seed=9, tissue_prob=1.0)
    differs = 0
    for _ in range(6):
        image_a, label_a = plain(hu, label[0].to(torch.int16))
        image_b, label_b = looks(hu, label[0].to(torch.int16))
        assert torch.equal(label_a, label_b), "the spatial draws and the label are the same with or without looks"
        differs += int(not torch.equal(image_a, image_b))
    assert differs >= 5


def test_tissue_prob_flag_round_trips_through_the_distributed_launcher() -> None:
    from pathlib import Path

    from textdiffseg import train
    from textdiffseg.launch import options_to_argv
    from textdiffseg.train_loop import TrainOptions

    opts = TrainOptions(data=Path("/a"), out=Path("/o"), augment=True, tissue_prob=0.5)
    assert train.parse_args(options_to_argv(opts)) == opts
    with pytest.raises(SystemExit):
        train.parse_args(["--data", "/a", "--out", "/o", "--augment", "--tissue-prob", "2"])
    with pytest.raises(SystemExit):  # it would do nothing without --augment
        train.parse_args(["--data", "/a", "--out", "/o", "--tissue-prob", "0.5"])
