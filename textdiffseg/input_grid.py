"""Resampling model-grid maps back onto the input CT's voxel grid (what ``Segmenter.predict`` returns on)."""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import ResampleToMatch


def _axis_weights(n_out: int, scale: float, offset: float, n_in: int) -> tuple[torch.Tensor, ...]:
    """Linear-interpolation indices and weights along one axis; samples outside ``[0, n_in)`` weigh 0 (zeros)."""
    x = scale * torch.arange(n_out, dtype=torch.float64) + offset
    i0 = torch.floor(x)
    frac = x - i0
    i0 = i0.long()
    i1 = i0 + 1
    w0 = (1 - frac) * ((i0 >= 0) & (i0 < n_in))
    w1 = frac * ((i1 >= 0) & (i1 < n_in))
    return i0.clamp(0, n_in - 1), i1.clamp(0, n_in - 1), w0.float(), w1.float()


def to_input_grid(
    maps: torch.Tensor,
    affine: torch.Tensor | np.ndarray,
    original: MetaTensor,
    out: np.ndarray | None = None,
    chunk: int = 32,
) -> np.ndarray:
    """Resample (C, D, H, W) maps on the grid ``affine`` (trilinear, zeros outside) onto ``original``'s voxel grid.

    The same values as MONAI ``ResampleToMatch(mode="bilinear", padding_mode="zeros")`` (to float rounding). When
    the two grids differ by axis flips, permutations, scaling and shifts only (always the case after
    ``Orientation`` + ``Spacing`` of an axis-aligned CT) the interpolation is done one axis at a time and written
    into ``out`` in slabs of ``chunk`` rows: several times faster, and without MONAI's full-size sampling grid
    (12 bytes per output voxel). Oblique grids go through ``ResampleToMatch``.
    """
    shape = tuple(original.shape[1:])
    if out is None:
        out = np.empty((maps.shape[0], *shape), np.float32)
    m = np.linalg.inv(np.asarray(affine, np.float64)) @ np.asarray(original.affine, np.float64)
    r = m[:3, :3]
    perm = [int(np.argmax(np.abs(r[:, j]))) for j in range(3)]
    off_axis = np.abs(r).sum(0) - np.abs(r[perm, range(3)])
    if sorted(perm) != [0, 1, 2] or np.any(off_axis > 1e-6 * np.abs(r).max()):
        resample = ResampleToMatch(mode="bilinear", padding_mode="zeros")
        out[:] = resample(MetaTensor(maps, affine=affine), img_dst=original).as_tensor().numpy()
        return out
    data = maps.permute(0, *(1 + k for k in perm)).float()  # axis j of data now runs along output axis j
    weights = [_axis_weights(shape[j], r[perm[j], j], m[perm[j], 3], data.shape[1 + j]) for j in range(3)]
    for j in (2, 1):  # the small axes first; the last step (output axis 0) copies whole planes
        i0, i1, w0, w1 = weights[j]
        view = [1, 1, 1, 1]
        view[1 + j] = -1
        data = data.index_select(1 + j, i0).mul_(w0.view(view)).add_(data.index_select(1 + j, i1).mul_(w1.view(view)))
    data = data.contiguous()
    i0, i1, w0, w1 = weights[0]
    dest = torch.from_numpy(out)
    for start in range(0, shape[0], chunk):
        end = min(start + chunk, shape[0])
        slab = data.index_select(1, i0[start:end]).mul_(w0[start:end].view(1, -1, 1, 1))
        dest[:, start:end] = slab.add_(data.index_select(1, i1[start:end]).mul_(w1[start:end].view(1, -1, 1, 1)))
    return out
