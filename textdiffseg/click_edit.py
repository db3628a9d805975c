"""Click edits: each click adds (foreground) or removes (background) the region it lies in, near it only.

A click's region is the connected set of voxels around it whose (lightly smoothed) intensity is within a tolerance of
the intensity at the click, inside a ball of ``radius_mm`` around it: a flood fill seeded by the click, as the
seeded region growing of interactive tools (ITK-SNAP, Slicer's "Grow from seeds") does it. The tolerance adapts to
the texture around the click (``tolerance_sigmas`` times its local standard deviation, clipped to
``[min_tolerance, max_tolerance]`` HU). A thin bridge to a neighbour of the same intensity is cut by one opening, and
the boundary is then moved to the midpoint between the region's intensity and its surroundings'.

How far a click reaches depends on where it is: one far from the mask's edge (a missed lesion, a wrong blob) reaches
``radius_mm``; one just beyond the edge (a boundary correction) reaches ``min_radius_mm`` plus twice its distance to
the edge, so a nudge does not flood the neighbourhood. A click's region keeps only the voxels nearer to it than to
every click of the other label (``compete``).

Edits run on the input grid after the model, in click order (the annotator's last click has the last word), so
every click takes effect even where the model ignores it: a foreground click's voxel is always in the mask, a
background click's voxel never is, and nothing farther than ``radius_mm`` from a click changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from textdiffseg.clicks import Clicks


@dataclass(frozen=True)
class ClickEditSettings:
    """How far and how loosely a click's region grows (see the module docstring)."""

    radius_mm: float = 20.0
    smoothing_mm: float = 1.5
    reference_mm: float = 3.0
    texture_mm: float = 6.0
    tolerance_sigmas: float = 2.5
    min_tolerance: float = 15.0
    max_tolerance: float = 60.0
    compete: bool = True
    boundary_steps: int = 2
    adaptive: bool = True
    depth_scale: float = 2.0
    min_radius_mm: float = 4.0


DEFAULT_CLICK_EDITS = ClickEditSettings()


def _ball_box(point: np.ndarray, shape: Sequence[int], spacing: np.ndarray, radius_mm: float) -> tuple[slice, ...]:
    reach = np.ceil(radius_mm / spacing).astype(int)
    centre = np.round(point).astype(int)
    return tuple(slice(max(0, c - r), min(s, c + r + 1)) for c, r, s in zip(centre, reach, shape))


def _seed(box: tuple[slice, ...], point: np.ndarray) -> tuple[int, int, int]:
    """The click's voxel as an index into ``box``."""
    return tuple(int(np.clip(round(p) - b.start, 0, b.stop - b.start - 1)) for p, b in zip(point, box))  # type: ignore[return-value]


def _distance_mm(box: tuple[slice, ...], point: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    axes = [(np.arange(b.start, b.stop) - p) * s for b, p, s in zip(box, point, spacing)]
    return np.sqrt(axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2)


def click_region(
    image: np.ndarray,
    point: Sequence[float],
    spacing: Sequence[float],
    settings: ClickEditSettings,
    radius_mm: float | None = None,
) -> tuple[tuple[slice, ...], np.ndarray]:
    """The region of the click at voxel ``point`` of ``image`` (HU, ``(D, H, W)`` with ``spacing`` mm), within
    ``radius_mm`` (default ``settings.radius_mm``): a box of the image and a boolean mask of that box (always holding
    the click's own voxel)."""
    spacing_mm = np.asarray(spacing, np.float64)
    where = np.asarray(point, np.float64)
    radius = settings.radius_mm if radius_mm is None else radius_mm
    box = _ball_box(where, image.shape, spacing_mm, radius + settings.smoothing_mm * 3)
    crop = ndimage.gaussian_filter(
        np.asarray(image[box], np.float32), sigma=settings.smoothing_mm / spacing_mm, truncate=2.0
    )
    distance = _distance_mm(box, where, spacing_mm)
    seed = _seed(box, where)
    near = distance <= max(settings.reference_mm, float(spacing_mm.max()) / 2)
    reference = float(np.median(crop[near])) if near.any() else float(crop[seed])
    texture = crop[distance <= settings.texture_mm]
    tolerance = float(
        np.clip(settings.tolerance_sigmas * texture.std(), settings.min_tolerance, settings.max_tolerance)
    )
    similar = (np.abs(crop - reference) <= tolerance) & (distance <= radius)
    opened = ndimage.binary_opening(similar)
    candidates = opened if opened[seed] else similar
    labelled, _ = ndimage.label(candidates)
    region = labelled == labelled[seed] if labelled[seed] else np.zeros_like(candidates)
    region[seed] = True
    return box, _grow_to_midpoint(crop, region, distance <= radius, settings.boundary_steps)


def _grow_to_midpoint(crop: np.ndarray, region: np.ndarray, allowed: np.ndarray, steps: int) -> np.ndarray:
    """``region`` grown ``steps`` voxels into the neighbours nearer (in intensity) to its mean than to its
    surroundings' (a ring 3-4 voxels out): the boundary moves to the midpoint between inside and outside, which a
    tolerance on a smoothed image misses (it cuts a high-contrast edge short by about the smoothing width)."""
    if steps < 1:
        return region
    near = ndimage.binary_dilation(region, iterations=2)
    ring = ndimage.binary_dilation(near, iterations=2) & ~near & allowed
    if not ring.any():
        return region
    inside, outside = float(crop[region].mean()), float(np.median(crop[ring]))
    closer = (np.abs(crop - inside) < np.abs(crop - outside)) & allowed
    for _ in range(steps):
        region = region | (ndimage.binary_dilation(region) & closer)
    return region


def edit_radius(
    probability: np.ndarray, point: np.ndarray, label: int, spacing_mm: np.ndarray, settings: ClickEditSettings
) -> float:
    """How far a click reaches: ``min_radius_mm`` plus ``depth_scale`` times its distance to the other side of the
    mask (``probability > 0.5``; a foreground click: the nearest masked voxel; a background click: the nearest
    unmasked one), at most ``radius_mm``. A click just beyond a boundary nudges it; one far from any (a missed lesion,
    a wrong blob) reaches the whole radius. Only the ball around the click is looked at."""
    box = _ball_box(point, probability.shape, spacing_mm, settings.radius_mm)
    mask = probability[box] > 0.5
    other = mask if label == 1 else ~mask
    if not other.any():
        return settings.radius_mm
    depth = float(ndimage.distance_transform_edt(~other, sampling=spacing_mm)[_seed(box, point)])
    return float(min(settings.radius_mm, settings.min_radius_mm + settings.depth_scale * depth))


def apply_click_edits(
    probability: np.ndarray,
    image: np.ndarray,
    clicks: Clicks,
    spacing: Sequence[float],
    settings: ClickEditSettings | None = None,
    uncertainty: np.ndarray | None = None,
) -> int:
    """Edit one prompt's ``probability`` map (``(D, H, W)``, in place) by its clicks on ``image`` (the same grid, in
    HU): a foreground click's region is set to 1, a background click's to 0, in click order; with
    ``settings.compete`` a click's region keeps only the voxels nearer to it than to every click of the other label.
    The ``uncertainty`` map of the prompt, if given, is set to 0 there (the annotator decided those voxels).
    Returns the number of voxels whose mask changed."""
    settings = settings or DEFAULT_CLICK_EDITS
    spacing_mm = np.asarray(spacing, np.float64)
    points, labels = clicks.array(), np.asarray(clicks.labels)
    changed = 0
    for point, label in zip(points, labels):
        radius = edit_radius(probability, point, label, spacing_mm, settings) if settings.adaptive else None
        box, region = click_region(image, point, spacing, settings, radius)
        if settings.compete:
            own = _distance_mm(box, point, spacing_mm)
            for other in points[labels != label]:
                region &= own < _distance_mm(box, other, spacing_mm)
        target = probability[box]
        value = 1.0 if label == 1 else 0.0
        changed += int(((target > 0.5) != (value > 0.5))[region].sum())
        target[region] = value
        if uncertainty is not None:
            uncertainty[box][region] = 0.0
    return changed
