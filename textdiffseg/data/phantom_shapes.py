"""Geometric primitives for the CT phantom: a voxel grid in world millimetres, smooth random blobs and tubes.

Shapes are defined in world (RAS+) millimetres and evaluated only inside their bounding boxes, so a 512x512x200
volume costs seconds, not minutes. Nothing here knows about anatomy; ``phantom.py`` places the organs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

Box = tuple[slice, slice, slice]


@dataclass(frozen=True)
class VoxelGrid:
    """An axis-aligned voxel grid: ``world = origin + sign * spacing * index`` per axis (no rotation)."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    signs: tuple[int, int, int] = (-1, -1, 1)  # stored like a DICOM-derived CT: LPS voxel order, RAS+ world

    @property
    def affine(self) -> np.ndarray:
        """4x4 voxel-to-world (RAS+, mm) matrix, as nibabel writes it."""
        aff = np.eye(4)
        for axis in range(3):
            aff[axis, axis] = self.signs[axis] * self.spacing[axis]
            aff[axis, 3] = self.origin[axis]
        return aff

    def axis_world(self, axis: int, index: slice | None = None) -> np.ndarray:
        """World coordinates (mm) of the voxel centres along one axis, optionally restricted to a slice."""
        idx = np.arange(self.shape[axis])[index if index is not None else slice(None)]
        return self.origin[axis] + self.signs[axis] * self.spacing[axis] * idx

    def box(self, lo: np.ndarray, hi: np.ndarray) -> Box | None:
        """Index slices covering the world box ``[lo, hi]`` (mm), or ``None`` if it misses the grid."""
        slices = []
        for axis in range(3):
            a = (lo[axis] - self.origin[axis]) / (self.signs[axis] * self.spacing[axis])
            b = (hi[axis] - self.origin[axis]) / (self.signs[axis] * self.spacing[axis])
            start = max(int(np.floor(min(a, b))), 0)
            stop = min(int(np.ceil(max(a, b))) + 1, self.shape[axis])
            if start >= stop:
                return None
            slices.append(slice(start, stop))
        return tuple(slices)  # type: ignore[return-value]

    def open_coords(self, box: Box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable world-coordinate arrays (x[:,1,1], y[1,:,1], z[1,1,:]) for a box."""
        x = self.axis_world(0, box[0])[:, None, None]
        y = self.axis_world(1, box[1])[None, :, None]
        z = self.axis_world(2, box[2])[None, None, :]
        return x, y, z


def _rotation_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class Blob:
    """A smooth random closed surface: an ellipsoid whose radius is modulated by low-frequency Fourier terms."""

    center: np.ndarray  # (3,) mm
    radii: np.ndarray  # (3,) mm
    angle: float  # rotation about the body (z) axis, radians
    freqs: np.ndarray  # (K, 3) spatial frequencies over the unit direction
    phases: np.ndarray  # (K,)
    amps: np.ndarray  # (K,) relative radius modulation

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        center: np.ndarray,
        radii: np.ndarray,
        roughness: float = 0.08,
        angle: float = 0.0,
    ) -> Blob:
        """A blob around ``center`` with ``radii`` (mm) and random smooth bumps of relative size ``roughness``."""
        k = 6
        return cls(
            center=np.asarray(center, float),
            radii=np.asarray(radii, float),
            angle=float(angle),
            freqs=rng.normal(0.0, 2.0, size=(k, 3)),
            phases=rng.uniform(0, 2 * np.pi, size=k),
            amps=rng.uniform(0, roughness, size=k),
        )

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """A world box (mm) that surely contains the blob."""
        reach = self.radii.max() * (1 + self.amps.sum()) + 1.0
        return self.center - reach, self.center + reach

    def level(self, grid: VoxelGrid, box: Box) -> np.ndarray:
        """Normalised radius inside ``box``: < 1 inside the surface, < s inside the surface shrunk by s."""
        x, y, z = grid.open_coords(box)
        rot = _rotation_z(-self.angle)
        dx, dy, dz = x - self.center[0], y - self.center[1], z - self.center[2]
        u = (rot[0, 0] * dx + rot[0, 1] * dy) / self.radii[0]
        v = (rot[1, 0] * dx + rot[1, 1] * dy) / self.radii[1]
        w = np.broadcast_to(dz / self.radii[2], np.broadcast_shapes(u.shape, dz.shape))
        rho = np.sqrt(u * u + v * v + w * w) + 1e-6
        wobble = np.ones_like(rho)
        for f, p, a in zip(self.freqs, self.phases, self.amps):
            wobble += a * np.cos((f[0] * u + f[1] * v + f[2] * w) / rho + p)
        return rho / wobble

    def mask(self, grid: VoxelGrid) -> tuple[Box | None, np.ndarray]:
        """Boolean mask of the blob inside its box (``(None, empty)`` when the blob is off the grid)."""
        box = grid.box(*self.bounds())
        if box is None:
            return None, np.zeros((0, 0, 0), bool)
        return box, self.level(grid, box) < 1.0


@dataclass(frozen=True)
class Tube:
    """A tube of varying radius around a smooth centre line (pancreas, bowel)."""

    points: np.ndarray  # (N, 3) densely sampled centre line, mm
    radius: np.ndarray  # (N,) mm

    @classmethod
    def through(cls, control: np.ndarray, radii: np.ndarray, step_mm: float = 1.0) -> Tube:
        """A tube through control points (linearly interpolated every ``step_mm``) with per-point radii."""
        control = np.asarray(control, float)
        seg = np.linalg.norm(np.diff(control, axis=0), axis=1)
        t = np.concatenate([[0.0], np.cumsum(seg)])
        samples = np.arange(0.0, t[-1] + step_mm, step_mm)
        points = np.stack([np.interp(samples, t, control[:, i]) for i in range(3)], axis=1)
        return cls(points=points, radius=np.interp(samples, t, np.asarray(radii, float)))

    def mask(self, grid: VoxelGrid, extra_mm: float = 0.0) -> tuple[Box | None, np.ndarray, np.ndarray]:
        """Boolean mask inside the tube's box, and the normalised distance to the centre line (0 axis, 1 surface)."""
        reach = self.radius.max() + extra_mm + 1.0
        box = grid.box(self.points.min(0) - reach, self.points.max(0) + reach)
        if box is None:
            return None, np.zeros((0, 0, 0), bool), np.zeros((0, 0, 0))
        x, y, z = grid.open_coords(box)
        shape = np.broadcast_shapes(x.shape, y.shape, z.shape)
        query = np.stack([np.broadcast_to(c, shape).ravel() for c in (x, y, z)], axis=1)
        dist, nearest = cKDTree(self.points).query(query, k=1)
        rel = (dist / (self.radius[nearest] + extra_mm)).reshape(shape)
        return box, rel < 1.0, rel
