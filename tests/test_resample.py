"""``input_grid.to_input_grid`` (separable trilinear resampling) gives MONAI ``ResampleToMatch``'s values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Orientation, ResampleToMatch, Spacing

from textdiffseg.input_grid import to_input_grid


def _reference(maps: torch.Tensor, affine: torch.Tensor, original: MetaTensor) -> np.ndarray:
    resample = ResampleToMatch(mode="bilinear", padding_mode="zeros")
    return resample(MetaTensor(maps, affine=affine), img_dst=original).as_tensor().numpy()


def _affine(perm: tuple[int, int, int], spacing: tuple[float, float, float], flips: tuple[int, int, int]) -> np.ndarray:
    a = np.zeros((4, 4))
    for j, (k, s, f) in enumerate(zip(perm, spacing, flips)):
        a[k, j] = s * f
    a[:3, 3] = (12.5, -40.0, 7.25)
    a[3, 3] = 1.0
    return a


@pytest.mark.parametrize(
    ("perm", "flips", "pixdim"),
    [
        ((0, 1, 2), (-1, -1, 1), (5.0, 5.0, 5.0)),  # the phantom's LPS-like grid to the model's 5 mm
        ((2, 0, 1), (1, -1, 1), (1.5, 1.5, 1.5)),  # permuted axes, finer than the input in-plane
        ((1, 0, 2), (1, 1, -1), (6.0, 4.0, 3.0)),  # anisotropic working spacing
    ],
)
def test_matches_resample_to_match(perm: tuple[int, int, int], flips: tuple[int, int, int],
                                   pixdim: tuple[float, float, float]) -> None:
    original = MetaTensor(torch.rand(1, 41, 37, 23), affine=torch.as_tensor(_affine(perm, (0.9, 1.1, 2.5), flips)))
    resampled = Spacing(pixdim=pixdim, mode="bilinear")(Orientation(axcodes="RAS")(original))
    maps = torch.rand(2, *resampled.shape[1:])
    expected = _reference(maps, resampled.affine, original)
    got = to_input_grid(maps, resampled.affine, original, chunk=5)
    assert got.shape == expected.shape == (2, 41, 37, 23)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_oblique_grid_falls_back_to_monai() -> None:
    a = np.eye(4)
    c, s = np.cos(0.3), np.sin(0.3)
    a[:2, :2] = [[c, -s], [s, c]]
    original = MetaTensor(torch.rand(1, 20, 20, 12), affine=torch.as_tensor(a))
    maps, src = torch.rand(1, 8, 9, 6), torch.as_tensor(np.diag([3.0, 3.0, 3.0, 1.0]))
    np.testing.assert_allclose(to_input_grid(maps, src, original), _reference(maps, src, original), atol=1e-6)
