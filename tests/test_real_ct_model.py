"""The shipped checkpoint on real CT it was not trained on (issue 12's regression test).

The shipped model (``apps/textdiffseg_app/model/pretrained_textdiffseg.pt``) was trained without the one real
abdomen, TotalSegmentator's ``example_ct`` (case ``ts_abdomen`` of ``make realct``; README "The model on real CT"
gives the recipe), so its liver there is a held-out figure. The labels are TotalSegmentator's model outputs, not
manual ground truth. The threshold sits just under the measured Dice (0.83 at 5 mm, served pipeline), so a change
that loses the real liver fails here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.transforms import EnsureChannelFirst, LoadImage

from textdiffseg.checkpoint import load_for_inference
from textdiffseg.data import realct
from textdiffseg.inference import Segmenter
from textdiffseg.model_scores import dice as overlap
from textdiffseg.prompt_match import trained_structures

ROOT = Path(__file__).resolve().parents[1]
REALCT = ROOT / "datasets" / "realct"
SHIPPED = ROOT / "apps" / "textdiffseg_app" / "model" / "pretrained_textdiffseg.pt"
LIVER_DICE_FLOOR = 0.80  # measured 0.833 (README); the pre-issue-12 checkpoint scored 0.002

pytestmark = pytest.mark.slow


def _abdomen() -> tuple[object, np.ndarray]:
    """ts_abdomen's CT (channel first) and label map, built by ``make realct`` or here (archives cached)."""
    image_path, label_path = REALCT / "imagesTr" / "ts_abdomen.nii.gz", REALCT / "labelsTr" / "ts_abdomen.nii.gz"
    if not image_path.is_file() or not label_path.is_file():
        realct.build(REALCT, ROOT / "datasets" / "downloads")
    image = EnsureChannelFirst()(LoadImage(image_only=True)(str(image_path)))
    label = np.asarray(LoadImage(image_only=True)(str(label_path))).round().astype(np.int32)
    return image, label


def test_shipped_model_finds_the_liver_of_a_real_abdomen_it_never_saw() -> None:
    model, encoder = load_for_inference(SHIPPED)
    assert model.config.in_channels == 3, "the shipped model reads three HU windows (soft tissue, wide, bone)"
    image, label = _abdomen()
    with torch.inference_mode():
        prediction = Segmenter(model, encoder).predict(image, ["liver", "hepatic parenchyma", "banana"])
    truth = label == 5  # TotalSegmentator's liver id
    dice = [overlap(probability > 0.5, truth) for probability in prediction.probability[:2]]
    assert dice[0] >= LIVER_DICE_FLOOR, f"liver Dice {dice[0]:.3f} on the held-out real abdomen"
    assert dice[1] >= dice[0] - 0.1, f"a paraphrase lost the liver: {dice[1]:.3f} against {dice[0]:.3f}"
    assert not (prediction.probability[2] > 0.5).any(), "an unknown prompt must give an empty mask"
    assert "liver" in trained_structures(model.config)
