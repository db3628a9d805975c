"""Click edits (``textdiffseg.click_edit``): a click adds or removes its intensity region, near it only."""

from __future__ import annotations

import numpy as np

from textdiffseg.click_edit import DEFAULT_CLICK_EDITS, ClickEditSettings, apply_click_edits, click_region, edit_radius
from textdiffseg.clicks import Clicks
from textdiffseg.model_scores import dice

SHAPE = (48, 48, 32)
SPACING = (1.0, 1.0, 2.0)


def _ct(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Soft tissue (40 HU, noise 10) with a 60 HU organ ball (radius 8 mm) and a -100 HU fat ball far from it."""
    rng = np.random.default_rng(seed)
    image = rng.normal(40.0, 10.0, SHAPE).astype(np.float32)
    grid = np.stack(np.meshgrid(*[np.arange(s) * sp for s, sp in zip(SHAPE, SPACING)], indexing="ij"), -1)
    organ = np.linalg.norm(grid - np.array([16.0, 16.0, 32.0]), axis=-1) <= 8.0
    fat = np.linalg.norm(grid - np.array([36.0, 36.0, 32.0]), axis=-1) <= 6.0
    image[organ] += 80.0  # 120 HU: a contrast-enhanced lesion
    image[fat] = rng.normal(-100.0, 10.0, int(fat.sum()))
    return image, organ, fat


def _distance_mm(points: np.ndarray, click: tuple[int, int, int]) -> np.ndarray:
    return np.sqrt((((points - np.array(click)) * np.array(SPACING)) ** 2).sum(1))


def test_a_foreground_click_adds_the_region_it_lies_in_and_nothing_far() -> None:
    image, organ, _ = _ct()
    probability = np.zeros(SHAPE, np.float32)  # the model missed the lesion
    changed = apply_click_edits(probability, image, Clicks.of([(16, 16, 16)]), SPACING)
    mask = probability > 0.5
    assert dice(mask, organ) > 0.9 and changed == int(mask.sum())
    assert not (mask & ~organ).sum() > 0.05 * organ.sum()  # it did not flood the 40 HU tissue around


def test_the_region_stops_at_the_radius_in_millimetres() -> None:
    image = np.full(SHAPE, 50.0, np.float32)  # one flat region: only the radius bounds the edit
    settings = ClickEditSettings(radius_mm=10.0)
    probability = np.zeros(SHAPE, np.float32)
    apply_click_edits(probability, image, Clicks.of([(24, 24, 16)]), SPACING, settings)
    grown = np.argwhere(probability > 0.5)
    reach = _distance_mm(grown, (24, 24, 16))
    assert reach.max() <= 10.0 and reach.max() > 8.0  # anisotropic voxels, millimetre radius
    assert np.ptp(grown[:, 2]) < np.ptp(grown[:, 0])  # fewer 2 mm slices than 1 mm rows


def test_a_background_click_removes_a_wrong_blob_and_leaves_the_rest() -> None:
    image, organ, fat = _ct()
    probability = (organ | fat).astype(np.float32)  # the mask wrongly includes the fat ball
    apply_click_edits(probability, image, Clicks.of(background=[(36, 36, 16)]), SPACING)
    mask = probability > 0.5
    assert (mask & fat).sum() < 0.05 * fat.sum() and (mask[~fat] == organ[~fat]).all()


def test_each_click_keeps_the_voxels_nearer_to_it_than_to_a_click_of_the_other_label() -> None:
    image = np.full(SHAPE, 50.0, np.float32)
    probability = np.zeros(SHAPE, np.float32)
    clicks = Clicks.of(foreground=[(20, 24, 16)], background=[(28, 24, 16)])
    apply_click_edits(probability, image, clicks, SPACING)
    mask = probability > 0.5
    assert mask[20, 24, 16] and not mask[28, 24, 16]
    assert mask[23, 24, 16] and not mask[25, 24, 16]  # split half-way between the two clicks


def test_a_click_always_holds_its_own_voxel() -> None:
    image, organ, _ = _ct()
    box, region = click_region(image, (2, 2, 2), SPACING, ClickEditSettings())  # a corner of plain tissue
    assert region[2 - box[0].start, 2 - box[1].start, 2 - box[2].start]
    probability = organ.astype(np.float32)
    apply_click_edits(probability, image, Clicks.of(background=[(16, 16, 16)]), SPACING)
    assert probability[16, 16, 16] == 0.0 and (probability > 0.5).sum() < 0.15 * organ.sum()  # the lesion is out


def test_a_click_just_beyond_the_mask_nudges_its_edge_only() -> None:
    image = np.full(SHAPE, 50.0, np.float32)  # one flat region: without the adaptive reach it would fill 20 mm
    probability = np.zeros(SHAPE, np.float32)
    probability[:, :20, :] = 1.0  # the mask ends at row 19
    assert edit_radius(probability, np.array([24.0, 22.0, 16.0]), 1, np.array(SPACING), DEFAULT_CLICK_EDITS) == 10.0
    apply_click_edits(probability, image, Clicks.of([(24, 22, 16)]), SPACING)  # 3 mm beyond it: reach 4 + 2 x 3 mm
    added = np.argwhere((probability > 0.5) & (np.arange(SHAPE[1]) >= 20)[None, :, None])
    assert len(added) and _distance_mm(added, (24, 22, 16)).max() <= 10.0


def test_the_edited_voxels_become_certain() -> None:
    image, organ, _ = _ct()
    probability = np.zeros(SHAPE, np.float32)
    uncertainty = np.full(SHAPE, 0.5, np.float32)
    apply_click_edits(probability, image, Clicks.of([(16, 16, 16)]), SPACING, uncertainty=uncertainty)
    assert (uncertainty[probability > 0.5] == 0).all() and (uncertainty[probability <= 0.5] == 0.5).all()
