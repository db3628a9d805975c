"""Teacher rehearsal (``textdiffseg.self_distillation``): overlapping masks in one label map, and the served model's
masks on a site image written as a training case on that image's grid."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.transforms import EnsureChannelFirst, LoadImage

from textdiffseg import self_distillation
from textdiffseg.checkpoint import read_config
from textdiffseg.data.folders import LabelledCase
from textdiffseg.finetune import known_cases, mixed_weights
from textdiffseg.inference import Segmenter
from textdiffseg.self_distillation import overlapping_masks_to_label_map, teacher_cases
from textdiffseg.train_data import prepare_cases


def test_overlapping_masks_are_encoded_exactly() -> None:
    rng = np.random.default_rng(0)
    left = rng.random((9, 8, 7)) < 0.3
    right = ~left & (rng.random((9, 8, 7)) < 0.3)
    masks = {
        "left kidney": left,
        "right kidney": right,
        "kidney": left | right,  # holds the two others
        "liver": rng.random((9, 8, 7)) < 0.2,  # overlaps anything by chance
        "liver tumor": np.zeros((9, 8, 7), bool),  # absent
    }
    label, targets = overlapping_masks_to_label_map(masks)
    assert label.dtype == np.uint16 and label.shape == (9, 8, 7)
    for name, mask in masks.items():
        np.testing.assert_array_equal(np.isin(label, targets[name]), mask, err_msg=name)
    assert targets["liver tumor"] == ()
    none = ~np.any(np.stack(list(masks.values())), axis=0)
    np.testing.assert_array_equal(label == 0, none)
    assert set(targets["kidney"]) == set(targets["left kidney"]) | set(targets["right kidney"])


def test_a_label_map_needs_masks_of_one_shape() -> None:
    with pytest.raises(ValueError, match="shape"):
        overlapping_masks_to_label_map({"a": np.zeros((2, 2, 2), bool), "b": np.zeros((2, 2, 3), bool)})
    with pytest.raises(ValueError, match="no masks"):
        overlapping_masks_to_label_map({})


def test_rehearsal_groups_share_the_patches() -> None:
    # 1 site case keeps half; 4 phantoms share 0.2; 2 teacher cases share 0.3
    weights = mixed_weights(1, [(4, 0.2), (2, 0.3)])
    assert weights == pytest.approx([0.5, 0.05, 0.05, 0.05, 0.05, 0.15, 0.15])
    assert mixed_weights(2, [(0, 0.2), (1, 0.3)]) == pytest.approx([0.35, 0.35, 0.3])  # an empty group takes nothing
    assert mixed_weights(3, [(0, 0.2)]) is None
    with pytest.raises(ValueError, match="sum below 1"):
        mixed_weights(1, [(1, 0.6), (1, 0.5)])


def test_teacher_case_holds_the_served_models_masks_on_the_site_images_grid(trained_tiny, tmp_path: Path) -> None:
    case = trained_tiny.cases[0]
    site = LabelledCase(case.case_id, case.image, case.label, {"spleen": (2,)})  # the site labelled the spleen
    known = ("liver", "spleen", "left kidney", "liver tumor")
    made = teacher_cases([site], trained_tiny.run_dir / "model.pt", known, tmp_path / "teacher")
    assert len(made) == 1
    teacher = made[0]
    assert teacher.image == case.image and teacher.case_id == f"{case.case_id}_teacher"
    assert sorted(teacher.targets) == ["left kidney", "liver", "liver tumor", "spleen"]
    written, image = nib.load(teacher.label), nib.load(case.image)
    assert written.shape == image.shape
    np.testing.assert_allclose(written.affine, image.affine, atol=1e-4)

    expected = Segmenter(trained_tiny.model, trained_tiny.encoder).predict(
        EnsureChannelFirst()(LoadImage(image_only=True)(str(case.image))), ["left kidney", "liver", "liver tumor"]
    )
    label = np.asarray(written.dataobj)
    for i, name in enumerate(["left kidney", "liver", "liver tumor"]):
        np.testing.assert_array_equal(np.isin(label, teacher.targets[name]), expected.probability[i] > 0.5)
    # the site's spleen is its label's, not the model's
    truth = np.asarray(nib.load(case.label).dataobj) == 2
    np.testing.assert_array_equal(np.isin(label, teacher.targets["spleen"]), truth)
    # the trained tiny model finds the liver: the teacher case makes it a positive of that image for training
    assert teacher.targets["liver"]
    prepared = prepare_cases([teacher], read_config(trained_tiny.run_dir / "model.pt"))[0]
    assert "liver" in prepared.present


def test_real_rehearsal_cases_prompt_only_what_the_model_knew(train_phantom_dir: Path) -> None:
    cases = known_cases(train_phantom_dir, ["liver", "urinary bladder"])  # the bladder: known, not in this dataset
    assert [c.case_id for c in cases] == ["phantom_000_rehearsal"]
    assert list(cases[0].targets) == ["liver"]
    assert known_cases(train_phantom_dir, ["ribs"]) == []


def test_a_model_knowing_more_structures_than_one_map_holds_keeps_the_first(
    trained_tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = trained_tiny.cases[0]
    site = LabelledCase(case.case_id, case.image, case.label, {"spleen": (2,)})
    monkeypatch.setattr(self_distillation, "MAX_STRUCTURES", 3)  # the site's spleen and two of the model's
    made = teacher_cases([site], trained_tiny.run_dir / "model.pt", ("liver", "left kidney", "colon"), tmp_path)
    assert sorted(made[0].targets) == ["left kidney", "liver", "spleen"]
