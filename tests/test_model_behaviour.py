"""What a trained model must do: learn, follow the text, leave absent structures empty, know where it is unsure.

One tiny model is trained once per session on one 6-mm phantom (``trained_tiny`` in conftest.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from monai.data import MetaTensor
from monai.transforms import EnsureChannelFirst, LoadImage

from textdiffseg.inference import Segmenter

pytestmark = pytest.mark.slow


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum()))


@pytest.fixture(scope="module")
def case(trained_tiny):  # noqa: ANN001, ANN201
    """The training case on its own grid: image MetaTensor and integer label map."""
    load = LoadImage(image_only=True)
    record = trained_tiny.cases[0]
    image = EnsureChannelFirst()(load(str(record.image)))
    label = np.asarray(load(str(record.label))).round().astype(int)
    return image, label, record.targets


@pytest.fixture(scope="module")
def prediction(trained_tiny, case):  # noqa: ANN001, ANN201
    image, _, _ = case
    segmenter = Segmenter(trained_tiny.model, trained_tiny.encoder)
    return segmenter.predict(image, ["liver", "left kidney", "spleen", "liver tumor"])


def test_loss_falls(trained_tiny) -> None:  # noqa: ANN001
    losses = [h["loss"] for h in trained_tiny.history]
    first, last = np.mean(losses[:30]), np.mean(losses[-30:])
    assert last < 0.7 * first, f"loss {first:.3f} -> {last:.3f}"
    for term in ("seg", "recon", "denoise"):
        assert term in trained_tiny.history[-1], "each loss term is logged separately"


def test_overfits_the_training_phantom(prediction, case) -> None:  # noqa: ANN001
    _, label, targets = case
    liver = _dice(prediction.probability[0] > 0.5, np.isin(label, targets["liver"]))
    spleen = _dice(prediction.probability[2] > 0.5, np.isin(label, targets["spleen"]))
    assert liver > 0.8, f"liver Dice {liver:.3f}"
    assert spleen > 0.4, f"spleen Dice {spleen:.3f} (a smaller organ; it needs more steps than the liver)"


def test_text_selects_the_structure(prediction, case) -> None:  # noqa: ANN001
    _, label, targets = case
    liver_truth, kidney_truth = np.isin(label, targets["liver"]), np.isin(label, targets["left kidney"])
    liver_mask, kidney_mask = prediction.probability[0] > 0.5, prediction.probability[1] > 0.5
    liver_own, liver_other = _dice(liver_mask, liver_truth), _dice(liver_mask, kidney_truth)
    kidney_own, kidney_other = _dice(kidney_mask, kidney_truth), _dice(kidney_mask, liver_truth)
    assert liver_own > 0.8 and liver_own > 10 * liver_other, (liver_own, liver_other)
    assert kidney_own > 0.25 and kidney_own > 5 * kidney_other, (kidney_own, kidney_other)
    assert _dice(liver_mask, kidney_mask) < 0.05, "two prompts, two different masks"


def test_absent_structure_gives_a_near_empty_mask(prediction, case) -> None:  # noqa: ANN001
    _, label, targets = case
    assert not np.isin(label, targets["liver tumor"]).any(), "the training case is tumour-free"
    painted = int((prediction.probability[3] > 0.5).sum())
    liver = int(np.isin(label, targets["liver"]).sum())
    assert painted < 0.01 * liver, f"'liver tumor' painted {painted} voxels on a tumour-free case"
    wins = (prediction.probability[3] > 0.5) & (prediction.probability.argmax(0) == 3)
    np.testing.assert_array_equal(prediction.label_map == 4, wins)


def test_output_is_on_the_input_grid(prediction, case) -> None:  # noqa: ANN001
    image, label, _ = case
    assert prediction.label_map.shape == label.shape == tuple(image.shape[1:])
    np.testing.assert_allclose(prediction.affine, np.asarray(image.affine))


def test_ensemble_uncertainty_is_higher_on_a_corrupted_region(trained_tiny, case) -> None:  # noqa: ANN001
    image, label, targets = case
    liver = np.isin(label, targets["liver"])
    centre = np.round(np.argwhere(liver).mean(0)).astype(int)
    box = tuple(slice(c - 5, c + 5) for c in centre)
    corrupted = image.clone()
    corrupted[(0, *box)] = -100.0  # a 6-cm block of fat density where the liver's centre should be
    segmenter = Segmenter(trained_tiny.model, trained_tiny.encoder, ensemble=4)
    clean = segmenter.predict(image, ["liver"]).uncertainty[0][box].mean()
    broken = segmenter.predict(MetaTensor(corrupted, affine=image.affine), ["liver"]).uncertainty[0][box].mean()
    assert broken > 2 * clean, f"uncertainty clean {clean:.3f} vs corrupted {broken:.3f}"
