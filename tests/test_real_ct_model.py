"""The shipped checkpoint on the one real abdomen (issue 12's regression test).

The shipped model (``apps/textdiffseg_app/model/pretrained_textdiffseg.pt``; README "The shipped model" gives the
recipe) is trained on every real patient the project has, including the one real abdomen, TotalSegmentator's
``example_ct`` (case ``ts_abdomen`` of ``make realct``): its organs there are training figures, and this test guards
them against regressions (thresholds just under the measured Dice, served pipeline; the labels are TotalSegmentator's
model outputs, not manual ground truth). What is not a training figure: the same scan cut to its top 120 mm, a scan
range the model never saw whole (it learned scan ends only from augmentation), where the previous shipped model lost
its liver (0.32). The held-out figure on this patient is README's leave-one-patient-out twin.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.transforms import EnsureChannelFirst, LoadImage

from textdiffseg.checkpoint import load_for_inference, read_config
from textdiffseg.data import realct
from textdiffseg.data.volumes import load_ras
from textdiffseg.inference import Segmenter
from textdiffseg.model_scores import dice as overlap
from textdiffseg.postprocess import LUNG_SHARE, lung_share
from textdiffseg.prompt_match import trained_structures

ROOT = Path(__file__).resolve().parents[1]
REALCT = ROOT / "datasets" / "realct"
SHIPPED = ROOT / "apps" / "textdiffseg_app" / "model" / "pretrained_textdiffseg.pt"
# measured Dice (README) minus a margin; the pre-issue-12 checkpoint scored 0 everywhere, the small model shipped before
# the medium one 0.83 / 0.74 / 0.82 / 0.78 for these four and 0 for the pancreas, gallbladder and bladder
# (TotalSegmentator label id, floor): measured 0.896, 0.903, 0.835, 0.916, 0.541, 0.908, 0.895 with one sampling step
# (the same weights with five leading steps, as shipped until 2026-11-28: 0.902, 0.878, 0.804, 0.889, 0.535, 0.844,
# 0.835)
ORGAN_DICE_FLOORS = {
    "liver": (5, 0.86),
    "spleen": (1, 0.86),
    "left kidney": (3, 0.79),
    "right kidney": (2, 0.87),
    "pancreas": (7, 0.50),
    "gallbladder": (4, 0.86),
    "urinary bladder": (21, 0.85),
}
HEART_LABEL = 51  # TotalSegmentator's id, as in datasets/realct/dataset.json
TOP_LIVER_FLOOR = 0.82  # the scan cut to its top 120 mm: measured 0.859 (five leading steps 0.872; small 0.644)

pytestmark = pytest.mark.slow


def _abdomen() -> tuple[object, np.ndarray]:
    """ts_abdomen's CT (channel first) and label map, built by ``make realct`` or here (archives cached)."""
    image_path, label_path = REALCT / "imagesTr" / "ts_abdomen.nii.gz", REALCT / "labelsTr" / "ts_abdomen.nii.gz"
    if not image_path.is_file() or not label_path.is_file():
        realct.build(REALCT, ROOT / "datasets" / "downloads")
    image = EnsureChannelFirst()(LoadImage(image_only=True)(str(image_path)))
    label = np.asarray(LoadImage(image_only=True)(str(label_path))).round().astype(np.int32)
    return image, label


def _scores(image, label: np.ndarray, prompts: list[str]) -> tuple[list[float], object]:  # noqa: ANN001
    model, encoder = load_for_inference(SHIPPED)
    with torch.inference_mode():
        prediction = Segmenter(model, encoder).predict(image, prompts)
    liver = ORGAN_DICE_FLOORS["liver"][0]  # what the other prompts (a paraphrase, nonsense) are scored against
    values = [ORGAN_DICE_FLOORS[p][0] if p in ORGAN_DICE_FLOORS else liver for p in prompts]
    return [overlap(prob > 0.5, label == v) for prob, v in zip(prediction.probability, values)], prediction


def test_shipped_model_segments_the_organs_of_the_real_abdomen() -> None:
    image, label = _abdomen()
    organs = list(ORGAN_DICE_FLOORS)
    dice, prediction = _scores(image, label, [*organs, "hepatic parenchyma", "banana"])
    for name, score in zip(organs, dice):
        assert score >= ORGAN_DICE_FLOORS[name][1], f"{name} Dice {score:.3f} on the real abdomen"
    assert dice[len(organs)] >= dice[0] - 0.1, f"a paraphrase lost the liver: {dice[len(organs)]:.3f}"
    assert not (prediction.probability[-1] > 0.5).any(), "an unknown prompt must give an empty mask"
    model_config = read_config(SHIPPED)
    assert model_config.in_channels == 3, "the shipped model reads three HU windows (soft tissue, wide, bone)"
    assert "liver" in trained_structures(model_config)


def test_shipped_model_finds_the_liver_when_the_scan_ends_in_the_upper_abdomen() -> None:
    image, label = _abdomen()
    keep = int(round(120 / float(image.affine[2, 2])))  # ts_abdomen is RAS: the last axis runs to the head
    top = image[..., -keep:]
    (dice,), _ = _scores(top, label[..., -keep:], ["liver"])
    assert dice >= TOP_LIVER_FLOOR, f"liver Dice {dice:.3f} on the scan cut to its top 120 mm"


def test_shipped_model_paints_no_abdominal_organ_in_the_upper_chest_of_a_chest_ct() -> None:
    """ts_chest_cta (a CT angiogram of the chest, trained on for its heart and vessels only): the raw model painted a
    50,000-voxel "liver" and a "spleen" at the lung apices; the chest rule of ``textdiffseg.postprocess`` removes
    whatever of a structure below the diaphragm lies at the level of the chest. The heart it was trained on stays
    (Dice 0.913 measured)."""
    path = REALCT / "imagesTr" / "ts_chest_cta.nii.gz"
    if not path.is_file():
        realct.build(REALCT, ROOT / "datasets" / "downloads")
    image = load_ras(path)
    heart = load_ras(REALCT / "labelsTr" / "ts_chest_cta.nii.gz")[0].numpy().round() == HEART_LABEL
    abdominal = ["liver", "spleen", "right kidney", "urinary bladder"]
    model, encoder = load_for_inference(SHIPPED)
    with torch.inference_mode():
        prediction = Segmenter(model, encoder).predict(image, [*abdominal, "heart"])
    chest = np.flatnonzero(lung_share(image[0].numpy()) >= LUNG_SHARE)
    upper_chest = slice((chest[0] + chest[-1]) // 2, None)  # RAS: the last axis runs to the head
    for name, probability in zip(abdominal, prediction.probability):
        painted = int((probability[..., upper_chest] > 0.5).sum())
        assert painted == 0, f"{painted} voxels of '{name}' in the upper chest"
    assert overlap(prediction.probability[-1] > 0.5, heart) >= 0.88
