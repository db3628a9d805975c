"""Simulated clicks from the errors of a prediction, as DeepEdit and VISTA3D train and evaluate interaction.

The false-negative region (target, not predicted) gets positive clicks, the false-positive region (predicted, not
target) negative ones, one click at the centre of each of the largest error components (the voxel deepest inside
it, by Euclidean distance transform), largest first. An empty prediction makes the whole target the error, so the
first click falls inside the largest piece of the target.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from textdiffseg.clicks import Clicks

MIN_ERROR_VOXELS = 1  # error components smaller than this get no click


def _as_bool(mask: np.ndarray | torch.Tensor) -> np.ndarray:
    array = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    return array.astype(bool)


def component_centre(component: np.ndarray) -> tuple[int, int, int]:
    """The voxel of a (non-empty) boolean component farthest from its border."""
    where = np.nonzero(component)
    lo = [max(0, int(w.min()) - 1) for w in where]
    hi = [int(w.max()) + 2 for w in where]
    crop = component[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    depth = ndimage.distance_transform_edt(np.pad(crop, 1))[1:-1, 1:-1, 1:-1]
    best = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return (best[0] + lo[0], best[1] + lo[1], best[2] + lo[2])


def error_clicks(
    prediction: np.ndarray | torch.Tensor,
    target: np.ndarray | torch.Tensor,
    count: int,
    min_voxels: int = MIN_ERROR_VOXELS,
) -> Clicks:
    """Up to ``count`` clicks at the centres of the largest error components of ``prediction`` against ``target``
    (both ``(D, H, W)``, booleans or 0/1): positive in missed regions, negative in wrongly predicted ones."""
    pred, truth = _as_bool(prediction), _as_bool(target)
    if count < 1:
        return Clicks((), ())
    components: list[tuple[int, np.ndarray, int]] = []  # (size, mask, label)
    for region, label in ((truth & ~pred, 1), (pred & ~truth, 0)):
        if not region.any():
            continue
        labelled, n = ndimage.label(region)
        sizes = np.bincount(labelled.ravel(), minlength=n + 1)[1:]
        for k in np.argsort(-sizes)[:count]:
            if sizes[k] >= min_voxels:
                components.append((int(sizes[k]), labelled == k + 1, label))
    components.sort(key=lambda c: -c[0])
    chosen = components[:count]
    points = tuple(tuple(float(v) for v in component_centre(mask)) for _, mask, _ in chosen)
    return Clicks(points, tuple(label for _, _, label in chosen))  # type: ignore[arg-type]


def next_click(prediction: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> Clicks:
    """The one click an annotator would give next: the centre of the largest error component (none if perfect)."""
    return error_clicks(prediction, target, 1)
