"""The phantom's vessels with a course (``vessels="course"``): the aorta divides, the IVC shows through the liver."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import center_of_mass, label

from textdiffseg.data.phantom import LABEL_VALUE, PhantomConfig, generate_case, main

COURSE = PhantomConfig(spacing=(2.5, 2.5, 2.5), vessels="course")
STRAIGHT = PhantomConfig(spacing=(2.5, 2.5, 2.5))
AORTA, IVC = LABEL_VALUE["aorta"], LABEL_VALUE["inferior vena cava"]


def _world_xy(case, index: tuple[float, float]) -> np.ndarray:
    """World x, y (mm) of a voxel position in an axial slice."""
    return case.affine[:2, :2] @ np.asarray(index) + case.affine[:2, 3]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_the_aorta_ends_where_two_unlabelled_iliac_arteries_go_left_and_right(index: int) -> None:
    case = generate_case(5, index, COURSE)
    img, lab = case.image.astype(float), case.label
    aorta_slices = np.nonzero((lab == AORTA).any(axis=(0, 1)))[0]
    lowest = int(aorta_slices.min())
    assert lowest >= 8, "the bifurcation lies inside the scan, with iliac arteries under it"
    assert aorta_slices.max() == lab.shape[2] - 1  # the aorta leaves the scan at the top
    end_x, end_y = _world_xy(case, center_of_mass(lab[:, :, lowest] == AORTA))
    bright = 0.8 * float(np.median(img[lab == AORTA]))
    below = lowest - 6  # 15 mm under the aorta's end
    arteries, n = label((img[:, :, below] > bright) & (lab[:, :, below] == 0))
    sides = set()
    for k in range(1, n + 1):
        x, y = _world_xy(case, center_of_mass(arteries == k))
        if abs(y - end_y) < 25 and 5 < abs(x - end_x) < 60:  # beside the aorta's end, not the spine behind it
            sides.add(int(np.sign(x - end_x)))
    assert sides == {-1, 1}
    assert not (lab[:, :, :below] == AORTA).any()


def test_the_ivc_is_labelled_in_every_slice_from_the_iliac_veins_to_the_top_even_through_the_liver() -> None:
    hidden_before = 0
    for index in range(3):
        straight, course = generate_case(6, index, STRAIGHT), generate_case(6, index, COURSE)
        liver_slices = (course.label == LABEL_VALUE["liver"]).any(axis=(0, 1))
        ivc = (course.label == IVC).any(axis=(0, 1))
        first = int(np.argmax(ivc))
        assert ivc[first:].all() and liver_slices[first:].sum() > 10
        hidden_before += int((~(straight.label == IVC).any(axis=(0, 1))).sum())
    assert hidden_before > 0, "the straight series' liver hides part of its IVC: the case this option mends"


def test_the_aorta_is_not_at_one_fixed_place() -> None:
    offsets = []
    for index in range(6):
        case = generate_case(8, index, COURSE)
        z = case.label.shape[2] * 2 // 3
        offsets.append(_world_xy(case, center_of_mass(case.label[:, :, z] == AORTA))[0])
    assert np.std(offsets) > 2.0
    assert all(x < 0 for x in offsets)  # always on the patient's left of the midline


def test_the_course_leaves_the_organs_and_the_straight_series_alone() -> None:
    straight, course = generate_case(9, 0, STRAIGHT), generate_case(9, 0, COURSE)
    again = generate_case(9, 0, PhantomConfig(spacing=(2.5, 2.5, 2.5), vessels="straight"))
    np.testing.assert_array_equal(straight.image, again.image)
    for name in ("liver", "spleen", "left kidney", "right kidney", "pancreas"):
        before, after = (straight.label == LABEL_VALUE[name]).sum(), (course.label == LABEL_VALUE[name]).sum()
        assert abs(int(after) - int(before)) < 0.08 * before, name
    assert not np.array_equal(straight.label == AORTA, course.label == AORTA)


def test_an_unknown_vessel_course_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="vessels must be one of"):
        generate_case(0, 0, PhantomConfig(spacing=(4.0, 4.0, 4.0), vessels="curved"))
    with pytest.raises(SystemExit):
        main(["--out", "/nonexistent", "--vessels", "curved"])
    assert "invalid choice" in capsys.readouterr().err
