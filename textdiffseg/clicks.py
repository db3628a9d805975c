"""Clicks on one prompt: their positions and labels, the maps the model sees, grid changes and the blend weight.

A click is a voxel position and a label (1 foreground, 0 background), as MONAI Label clients send them. The model
sees each prompt's clicks as two maps at the model grid (positive, negative), a Gaussian blob of
``CLICK_SIGMA_VOXELS`` around each click. Clicks change a mask near them only: :func:`click_weight` is 1 up to
``inner_mm`` from the nearest click and falls linearly to 0 at ``outer_mm``; the segmenter keeps the text-only result
where it is 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from textdiffseg.prompts import PromptError

MAX_CLICKS = 64  # per request
CLICK_SIGMA_VOXELS = 1.0  # of the blobs, at the model grid
CLICK_RADIUS_MM = 40.0  # beyond this distance from every click the text-only mask is kept
CLICK_RAMP_MM = 10.0  # the blend falls from 1 to 0 over the last CLICK_RAMP_MM of the radius


class ClickError(PromptError):
    """Clicks that cannot be used as given (served as HTTP 400); the message says which and why."""


@dataclass(frozen=True)
class Clicks:
    """The clicks on one prompt: voxel positions ``(i, j, k)`` on some grid and labels (1 foreground, 0 background)."""

    points: tuple[tuple[float, float, float], ...]
    labels: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.points) != len(self.labels):
            raise ClickError(f"{len(self.points)} points but {len(self.labels)} point labels")
        if any(label not in (0, 1) for label in self.labels):
            raise ClickError(f"point labels must be 1 (foreground) or 0 (background), got {list(self.labels)}")
        if any(len(p) != 3 for p in self.points):
            raise ClickError("every point must be three voxel indices [i, j, k]")

    @classmethod
    def of(cls, foreground: Sequence[Sequence[float]] = (), background: Sequence[Sequence[float]] = ()) -> Clicks:
        """Clicks from foreground and background point lists (deepgrow style)."""
        points = [tuple(float(v) for v in p) for p in (*foreground, *background)]
        return cls(tuple(points), (1,) * len(foreground) + (0,) * len(background))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.points)

    def __add__(self, other: Clicks) -> Clicks:
        return Clicks(self.points + other.points, self.labels + other.labels)

    def array(self) -> np.ndarray:
        """Positions as an ``(N, 3)`` float array."""
        return np.asarray(self.points, dtype=np.float64).reshape(-1, 3)


def check_inside(clicks: Clicks, shape: Sequence[int], what: str = "image") -> None:
    """Raise :class:`ClickError` naming the first point outside a grid of ``shape`` (voxel indices)."""
    for point in clicks.points:
        if not all(0 <= v <= s - 1 for v, s in zip(point, shape)):
            shown = [int(v) if float(v).is_integer() else v for v in point]
            raise ClickError(f"point {shown} is outside the {what} (voxel indices 0..{[s - 1 for s in shape]})")


def to_grid(clicks: Clicks, source_affine: np.ndarray, target_affine: np.ndarray) -> Clicks:
    """The same clicks as continuous voxel positions on another grid (through world coordinates)."""
    if not len(clicks):
        return clicks
    m = np.linalg.inv(np.asarray(target_affine, np.float64)) @ np.asarray(source_affine, np.float64)
    moved = clicks.array() @ m[:3, :3].T + m[:3, 3]
    return Clicks(tuple(tuple(float(v) for v in p) for p in moved), clicks.labels)  # type: ignore[arg-type]


def shift(clicks: Clicks, offset: Sequence[float]) -> Clicks:
    """Clicks relative to a box starting at ``offset`` (voxels)."""
    moved = clicks.array() - np.asarray(offset, np.float64)
    return Clicks(tuple(tuple(float(v) for v in p) for p in moved), clicks.labels)  # type: ignore[arg-type]


def _blob(out: torch.Tensor, point: np.ndarray, sigma: float) -> None:
    """Max a Gaussian blob (peak 1) around a continuous ``point`` into ``out`` (D, H, W), in a 3-sigma box."""
    reach = int(np.ceil(3 * sigma))
    lo = [max(0, int(np.floor(c)) - reach) for c in point]
    hi = [min(s, int(np.floor(c)) + reach + 2) for c, s in zip(point, out.shape)]
    if any(a >= b for a, b in zip(lo, hi)):
        return  # the blob lies outside this box (a click beyond a sliding window)
    axes = [(torch.arange(a, b, dtype=torch.float32) - float(c)) ** 2 for a, b, c in zip(lo, hi, point)]
    d2 = axes[0][:, None, None] + axes[1][None, :, None] + axes[2][None, None, :]
    box = out[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    torch.maximum(box, torch.exp(-d2 / (2 * sigma**2)), out=box)


def click_maps(
    clicks: Sequence[Clicks | None], shape: Sequence[int], sigma: float = CLICK_SIGMA_VOXELS
) -> torch.Tensor:
    """``(P, 2, D, H, W)`` maps of each prompt's clicks (channel 0 positive, 1 negative) on a grid of ``shape``
    whose voxel ``(0, 0, 0)`` is where the click positions count from; clicks outside it leave no mark."""
    maps = torch.zeros((len(clicks), 2, *shape), dtype=torch.float32)
    for p, one in enumerate(clicks):
        for point, label in zip(one.array() if one else (), one.labels if one else ()):
            _blob(maps[p, 0 if label == 1 else 1], point, sigma)
    return maps


def click_weight(
    clicks: Clicks,
    shape: Sequence[int],
    spacing: Sequence[float],
    radius_mm: float = CLICK_RADIUS_MM,
    ramp_mm: float = CLICK_RAMP_MM,
) -> torch.Tensor:
    """``(D, H, W)`` weight of the clicked result: 1 up to ``radius_mm - ramp_mm`` from the nearest click, falling
    linearly to 0 at ``radius_mm`` (positions in voxels of a grid with ``spacing`` mm)."""
    distance = torch.full(tuple(shape), float("inf"))
    axes = [torch.arange(s, dtype=torch.float32) * float(sp) for s, sp in zip(shape, spacing)]
    for point in clicks.array():
        d = [(a - float(c) * float(sp)) ** 2 for a, c, sp in zip(axes, point, spacing)]
        torch.minimum(distance, (d[0][:, None, None] + d[1][None, :, None] + d[2][None, None, :]).sqrt(), out=distance)
    return ((radius_mm - distance) / max(ramp_mm, 1e-6)).clamp(0.0, 1.0)


def click_box(
    clicks: Clicks, shape: Sequence[int], spacing: Sequence[float], min_size: Sequence[int], radius_mm: float
) -> tuple[slice, slice, slice]:
    """The box of a grid of ``shape`` that holds every voxel within ``radius_mm`` of a click, grown (centred) to at
    least ``min_size`` where the grid allows: what the clicked pass needs to see."""
    points = clicks.array()
    box = []
    for axis, (size, sp, least) in enumerate(zip(shape, spacing, min_size)):
        reach = int(np.ceil(radius_mm / float(sp))) + 1
        lo = max(0, int(np.floor(points[:, axis].min())) - reach)
        hi = min(size, int(np.ceil(points[:, axis].max())) + reach + 1)
        want = min(size, max(least, hi - lo))
        lo = min(max(0, (lo + hi - want) // 2), size - want)
        hi = lo + want
        box.append(slice(lo, hi))
    return box[0], box[1], box[2]
