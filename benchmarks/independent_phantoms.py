"""Synthetic abdominal CT phantoms built independently of ``textdiffseg.data.phantom``: an out-of-family test set.

Run: ``python benchmarks/independent_phantoms.py --out DIR --cases N --seed S [--preview PNG_DIR]``. It writes an
MSD-style folder (``dataset.json``, ``imagesTr/*.nii.gz`` int16 HU, ``labelsTr/*.nii.gz`` uint8) that
``python -m textdiffseg.evaluate --data DIR --ckpt CKPT`` loads. Each ``training`` entry carries its own ``targets``
(structure name -> label values), so the loader never guesses from the label names.

Nothing here reads or imports the project's own phantom generator: shapes, HU values and placement rules were
designed from textbook anatomy and typical CT attenuation. Organs are unions of rotated superquadrics or swept tubes
(balls along a spline), with smooth random surface perturbation, clipped to the abdominal cavity and to the
underside of a two-dome diaphragm. Each case draws a patient (size, adiposity, superellipse outline, vertebral level
heights), organ sizes and positions, a contrast phase (non-contrast, arterial or portal-venous), a noise level,
slice spacing and scan range. Labels never overlap: structures are painted in priority order and a voxel, once
claimed, keeps its first owner.

Coordinates (patient frame, mm): x to the patient's Right, y Anterior, z Superior (RAS+, as nibabel defines world
space: ``nibabel.orientations.ornt2axcodes`` labels the negative and positive ends of the world axes
``('L','R'), ('P','A'), ('I','S')``, i.e. +x ends at the patient's right; see also nibabel's "Coordinate systems and
affines" page). So the liver and the right kidney sit at larger x than the spleen and the left kidney. Voxel axes
are aligned with the world axes (positive diagonal affine); the patient lies slightly rotated (yaw) and off-centre.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage
from scipy.interpolate import CubicSpline

STRUCTURES: dict[str, int] = {
    "liver": 1,
    "spleen": 2,
    "left kidney": 3,
    "right kidney": 4,
    "pancreas": 5,
    "stomach": 6,
    "gallbladder": 7,
    "aorta": 8,
    "inferior vena cava": 9,
    "urinary bladder": 10,
    "colon": 11,
}
# Derived prompt: both kidneys (the vocabulary's "kidney"); evaluated like any other target.
TARGETS: dict[str, list[int]] = {**{name: [value] for name, value in STRUCTURES.items()}, "kidney": [3, 4]}
DATASET_NAME = "IndependentAbdomenCTPhantom"
PHASES = ("non-contrast", "arterial", "portal-venous")
AIR = -1000.0
# Tissue classes recorded per voxel beside the labels (not written out; for checks of the HU of each class)
OUTSIDE, FAT, BONE, MUSCLE, SOFT, LUNG, TABLE = range(7)

# HU ranges (low, high) per tissue and phase: non-contrast / late arterial (~35 s) / portal-venous (~70 s).
HU_RANGES: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "liver": ((50, 65), (68, 88), (95, 125)),
    "spleen": ((42, 52), (95, 135), (100, 125)),
    "kidney_cortex": ((28, 38), (150, 210), (150, 195)),
    "kidney_medulla": ((26, 36), (60, 100), (140, 185)),
    "pancreas": ((38, 48), (100, 135), (80, 105)),
    "artery": ((35, 50), (250, 380), (140, 190)),
    "vein_systemic": ((35, 48), (60, 110), (115, 155)),
    "vein_portal": ((35, 48), (90, 150), (150, 190)),
    "hollow_wall": ((35, 45), (60, 90), (70, 100)),
    "muscle": ((45, 58), (50, 62), (55, 70)),
    "myocardium": ((38, 48), (80, 120), (90, 120)),
}
HU_FIXED: dict[str, tuple[float, float]] = {
    "bile": (0, 20),
    "urine": (0, 14),
    "gastric_fluid": (5, 25),
    "bowel_fluid": (5, 30),
    "fat_subq": (-118, -98),
    "fat_visceral": (-105, -85),
    "bone_cortex": (700, 1100),
    "bone_cancellous": (130, 280),
    "cartilage": (100, 200),
    "disc": (70, 100),
    "csf": (5, 25),
    "lung": (-880, -820),
    "skin": (20, 45),
    "table_shell": (150, 300),
}


def draw_hu(rng: np.random.Generator, phase: str) -> dict[str, float]:
    """Mean HU of every tissue for one case in ``phase``."""
    k = PHASES.index(phase)
    hu = {name: float(rng.uniform(*ranges[k])) for name, ranges in HU_RANGES.items()}
    hu.update({name: float(rng.uniform(*lo_hi)) for name, lo_hi in HU_FIXED.items()})
    return hu


def unit(v: Sequence[float]) -> np.ndarray:
    """``v`` scaled to length 1."""
    a = np.asarray(v, dtype=np.float64)
    return a / np.linalg.norm(a)


def axes_from(u: Sequence[float], hint: Sequence[float]) -> np.ndarray:
    """Orthonormal frame (columns u, v, w): u along ``u``, v the part of ``hint`` orthogonal to u, w = u x v."""
    a = unit(u)
    b = np.asarray(hint, dtype=np.float64)
    b = unit(b - a * float(a @ b))
    return np.stack([a, b, np.cross(a, b)], axis=1)


def rotation(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Rotation matrix from angles in degrees: about z (yaw), then y (pitch), then x (roll)."""
    cz, sz = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    cy, sy = math.cos(math.radians(pitch)), math.sin(math.radians(pitch))
    cx, sx = math.cos(math.radians(roll)), math.sin(math.radians(roll))
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    return rz @ ry @ rx


def resample_path(points: Sequence[Sequence[float]], radii: Sequence[float], step: float) -> tuple[np.ndarray, ...]:
    """A smooth curve through control ``points`` sampled every ``step`` mm, with radii interpolated along it."""
    pts = np.asarray(points, dtype=np.float64)
    rad = np.asarray(radii, dtype=np.float64)
    chord = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    n = max(2, int(math.ceil(chord[-1] / step)) + 1)
    t = np.linspace(0.0, chord[-1], n)
    if len(pts) == 2:
        curve = np.stack([np.interp(t, chord, pts[:, i]) for i in range(3)], axis=1)
    else:
        curve = CubicSpline(chord, pts, bc_type="natural")(t)
    return curve, np.interp(t, chord, rad)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], cell: Sequence[float]) -> np.ndarray:
    """Unit-variance smooth random field of ``shape``; ``cell`` is the correlation length per axis in voxels."""
    cell = [max(1.0, float(c)) for c in cell]
    low = rng.standard_normal([int(math.ceil(n / c)) + 3 for n, c in zip(shape, cell)])
    field_ = ndimage.zoom(low, cell, order=3, mode="nearest", grid_mode=True)
    off = [int(rng.integers(0, max(1, f - n + 1))) for f, n in zip(field_.shape, shape)]
    out = field_[tuple(slice(o, o + n) for o, n in zip(off, shape))]
    return ((out - out.mean()) / (out.std() + 1e-6)).astype(np.float32)


@dataclass(frozen=True)
class Box:
    """Index slices of a sub-block of the volume."""

    sl: tuple[slice, slice, slice]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Voxels per axis."""
        return tuple(s.stop - s.start for s in self.sl)  # type: ignore[return-value]

    def inside(self, other: Box) -> tuple[slice, slice, slice] | None:
        """Slices of ``other`` (clipped to this box) relative to this box's origin, or None if they don't meet."""
        rel = []
        for mine, theirs in zip(self.sl, other.sl):
            lo, hi = max(mine.start, theirs.start), min(mine.stop, theirs.stop)
            if hi <= lo:
                return None
            rel.append(slice(lo - mine.start, hi - mine.start))
        return tuple(rel)  # type: ignore[return-value]


@dataclass(frozen=True)
class Case:
    """One generated phantom: HU (int16), labels (uint8), the RAS affine, metadata, and the tissue class of every
    voxel (``FAT``, ``BONE``, ...; not written to disk)."""

    hu: np.ndarray
    label: np.ndarray
    affine: np.ndarray
    meta: dict[str, Any]
    tissue: np.ndarray


@dataclass(frozen=True)
class Tube:
    """Balls swept along a curve, evaluated on a box: ``q`` = min distance / radius (< 1 inside), ``idx`` the
    nearest sample (-1 far away), and the samples' points and radii."""

    box: Box
    q: np.ndarray
    idx: np.ndarray
    points: np.ndarray
    radii: np.ndarray

    def at(self, values: np.ndarray) -> np.ndarray:
        """Per-sample ``values`` looked up at every voxel's nearest sample."""
        return values[np.clip(self.idx, 0, None)]


@dataclass
class Anatomy:
    """One patient's body outline and landmarks (patient frame, mm)."""

    a0: float  # body half width at the waist
    b0: float  # body half depth (AP) at the waist
    p: float  # superellipse exponent of the outline
    back_flat: float  # the back is flattened by the table at y = -back_flat * b
    subq: float  # subcutaneous fat thickness
    wall: float  # abdominal wall muscle thickness
    harmonics: np.ndarray  # (k, amplitude, phase) rows of the outline's angular perturbation
    chest_k: float
    hip_k: float
    belly_k: float
    size: float  # global organ scale
    hl: float  # lumbar level height (vertebral body + disc)
    ht: float  # thoracic level height
    y_spine0: float  # vertebral body centre (y) at z = 0 (top of L1)
    lordosis: float
    z_dome_r: float  # right hemidiaphragm apex
    z_dome_l: float
    z_pubis: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def A(self) -> float:  # noqa: N802 - anatomical half axis, capital as in the docs
        """Half width of the abdominal cavity at the waist."""
        return self.a0 - self.subq - self.wall

    @property
    def B(self) -> float:  # noqa: N802
        """Half depth of the abdominal cavity at the waist."""
        return self.b0 - self.subq - self.wall

    def outline(self, z: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Body outline at height(s) ``z``: half width, half depth and the y of its centre. The back stays at
        y = -b0 (it lies on the table); the front moves with the belly."""
        z = np.asarray(z, dtype=np.float64)
        chest = 1.0 / (1.0 + np.exp(-(z - 60.0) / 25.0))
        hips = np.exp(-(((z - (self.z_pubis + 40.0)) / 75.0) ** 2))
        belly = np.exp(-(((z + 3.0 * self.hl) / 110.0) ** 2))
        a = self.a0 * (1.0 + self.chest_k * chest + self.hip_k * hips)
        front = self.b0 * (1.0 + self.belly_k * belly - 0.04 * chest)
        return a, 0.5 * (front + self.b0), 0.5 * (front - self.b0)

    @property
    def back_y(self) -> float:
        """Skin of the back, flattened on the table."""
        return -self.b0 * self.back_flat

    def spine_y(self, z: np.ndarray | float) -> np.ndarray:
        """Vertebral body centre (y) at height ``z``: lumbar lordosis forward, thoracic spine slightly back."""
        z = np.asarray(z, dtype=np.float64)
        lord = self.lordosis * np.exp(-(((z + 3.0 * self.hl) / (1.9 * self.hl)) ** 2))
        return self.y_spine0 + lord - 0.07 * np.clip(z - 30.0, 0.0, None)

    def dome(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Height of the diaphragm surface: two paraboloid domes, lower posteriorly (costophrenic recesses)."""
        A, B = self.A, self.B
        out = None
        for side, apex in ((1.0, self.z_dome_r), (-1.0, self.z_dome_l)):
            dx = (x - side * 0.42 * A) / (0.62 * A)
            dy = y + 0.12 * B
            dy = np.where(dy < 0, dy / (0.78 * B), dy / (1.35 * B))
            z = apex - 58.0 * (dx**2 + dy**2)
            out = z if out is None else np.maximum(out, z)
        return np.maximum(out, min(self.z_dome_r, self.z_dome_l) - 120.0)


class Canvas:
    """The voxel grid: HU, labels and a 'claimed' mask; painting never takes a voxel another structure holds."""

    def __init__(
        self,
        shape: tuple[int, int, int],
        spacing: tuple[float, float, float],
        origin: np.ndarray,
        yaw: float,
        t: np.ndarray,
    ) -> None:
        self.shape, self.spacing, self.origin = shape, spacing, origin
        self.hu = np.full(shape, AIR, dtype=np.float32)
        self.label = np.zeros(shape, dtype=np.uint8)
        self.claimed = np.zeros(shape, dtype=bool)
        self.tissue = np.zeros(shape, dtype=np.uint8)  # OUTSIDE, FAT, BONE, ... (see the constants)
        self.cos, self.sin, self.t = math.cos(math.radians(yaw)), math.sin(math.radians(yaw)), t
        wx = origin[0] + np.arange(shape[0]) * spacing[0]
        wy = origin[1] + np.arange(shape[1]) * spacing[1]
        dx, dy = wx[:, None] - t[0], wy[None, :] - t[1]
        self.px = (self.cos * dx + self.sin * dy).astype(np.float32)  # patient x of each (i, j)
        self.py = (-self.sin * dx + self.cos * dy).astype(np.float32)
        self.pz = (origin[2] + np.arange(shape[2]) * spacing[2] - t[2]).astype(np.float32)

    @property
    def affine(self) -> np.ndarray:
        """Voxel -> world (RAS+, mm)."""
        aff = np.diag([*self.spacing, 1.0])
        aff[:3, 3] = self.origin
        return aff

    def box(self, lo: Sequence[float], hi: Sequence[float]) -> Box | None:
        """Index box covering the patient-frame axis-aligned box [lo, hi], or None if it misses the volume."""
        corners = np.array([[x, y] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])])
        wx = self.cos * corners[:, 0] - self.sin * corners[:, 1] + self.t[0]
        wy = self.sin * corners[:, 0] + self.cos * corners[:, 1] + self.t[1]
        wz = np.array([lo[2], hi[2]]) + self.t[2]
        sl = []
        for axis, w in enumerate((wx, wy, wz)):
            a = int(math.floor((w.min() - self.origin[axis]) / self.spacing[axis]))
            b = int(math.ceil((w.max() - self.origin[axis]) / self.spacing[axis])) + 1
            a, b = max(a, 0), min(b, self.shape[axis])
            if b <= a:
                return None
            sl.append(slice(a, b))
        return Box(tuple(sl))  # type: ignore[arg-type]

    def coords(self, box: Box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Patient-frame x, y (shape (ni, nj, 1)) and z (shape (1, 1, nk)) of a box."""
        si, sj, sk = box.sl
        return self.px[si, sj][:, :, None], self.py[si, sj][:, :, None], self.pz[sk][None, None, :]

    def paint(
        self, box: Box, mask: np.ndarray, hu: np.ndarray | float, label: int = 0, tissue: int = SOFT
    ) -> np.ndarray:
        """Give the unclaimed voxels of ``mask`` (within ``box``) HU ``hu``, ``label`` and ``tissue`` class;
        returns what was painted."""
        mask = np.broadcast_to(mask, box.shape)
        free = mask & ~self.claimed[box.sl]
        target = self.hu[box.sl]
        target[free] = np.broadcast_to(hu, box.shape)[free] if np.ndim(hu) else hu
        if label:
            self.label[box.sl][free] = label
        self.tissue[box.sl][free] = tissue
        self.claimed[box.sl] |= free
        return free


def superquadric(
    coords: tuple[np.ndarray, np.ndarray, np.ndarray],
    center: Sequence[float],
    radii: Sequence[float],
    rot: np.ndarray | None = None,
    e1: float = 1.0,
    e2: float = 1.0,
    bend: float = 0.0,
) -> np.ndarray:
    """Normalised inside-outside field of a rotated superquadric (< 1 inside, ~ distance / radius).

    ``rot`` columns are the local axes (u, v, w) in the patient frame; ``e1`` shapes the profile along w-ish
    (small = box-like ends), ``e2`` the cross-section; ``bend`` curves the body: w is shifted by
    ``bend * (u^2 + v^2) / r_u`` so the +w face is concave.
    """
    x, y, z = coords
    dx, dy, dz = x - center[0], y - center[1], z - center[2]
    r = np.eye(3) if rot is None else rot
    lu = r[0, 0] * dx + r[1, 0] * dy + r[2, 0] * dz
    lv = r[0, 1] * dx + r[1, 1] * dy + r[2, 1] * dz
    lw = r[0, 2] * dx + r[1, 2] * dy + r[2, 2] * dz
    if bend:
        lw = lw - bend * (lu**2 + lv**2) / radii[0]
    fu = np.abs(lu / radii[0]) ** (2.0 / e2)
    fv = np.abs(lv / radii[1]) ** (2.0 / e2)
    fw = np.abs(lw / radii[2]) ** (2.0 / e1)
    f = (fu + fv) ** (e2 / e1) + fw
    return (f ** (e1 / 2.0)).astype(np.float32)


class Builder:
    """Draws and paints one phantom case."""

    def __init__(
        self, rng: np.random.Generator, max_inplane: int, max_slices: int, coverage: str, phase: str = "mixed"
    ) -> None:
        self.rng = rng
        drawn = str(rng.choice(PHASES, p=[0.25, 0.25, 0.5]))  # drawn even when fixed: the rest stays the same
        self.phase = drawn if phase == "mixed" else phase
        self.hu = draw_hu(rng, self.phase)
        self.an = self._draw_anatomy()
        self.coverage = coverage if coverage != "mixed" else ("upper" if rng.random() < 0.25 else "full")
        self.canvas = self._make_grid(max_inplane, max_slices)
        shape, sp = self.canvas.shape, self.canvas.spacing
        self.tex_coarse = smooth_noise(rng, shape, [14.0 / s for s in sp])
        self.tex_fine = smooth_noise(rng, shape, [4.0 / s for s in sp])

    # ---------------------------------------------------------------- drawing the patient and the grid
    def u(self, lo: float, hi: float) -> float:
        """A uniform draw."""
        return float(self.rng.uniform(lo, hi))

    def jit(self, mm: float) -> float:
        """A position jitter in [-mm, mm]."""
        return self.u(-mm, mm)

    def _draw_anatomy(self) -> Anatomy:
        fat = self.u(0.0, 1.0)
        frame = self.u(0.0, 1.0)
        size = self.u(0.9, 1.1)
        subq = 7.0 + 30.0 * fat
        wall = self.u(9.0, 15.0)
        a0 = 118.0 + 30.0 * frame + subq + wall * 0.5
        b0 = 78.0 + 18.0 * frame + subq + wall * 0.5 + 15.0 * fat
        hl, ht = self.u(33.0, 38.0) * size, self.u(25.0, 28.5) * size
        back_flat = self.u(0.86, 0.94)
        subq_back = 0.6 * subq
        y_spine0 = -b0 * back_flat + subq_back + self.u(72.0, 84.0) * size
        z_dome_r = self.u(2.9, 3.6) * ht
        harmonics = np.array([[k, self.u(0.0, 0.02), self.u(0, 2 * math.pi)] for k in (2, 3, 4, 5)])
        an = Anatomy(
            a0=a0,
            b0=b0,
            p=self.u(2.2, 3.0),
            back_flat=back_flat,
            subq=subq,
            wall=wall,
            harmonics=harmonics,
            chest_k=self.u(-0.06, 0.03),
            hip_k=self.u(0.02, 0.10),
            belly_k=self.u(0.0, 0.12) * fat,
            size=size,
            hl=hl,
            ht=ht,
            y_spine0=y_spine0,
            lordosis=self.u(6.0, 18.0),
            z_dome_r=z_dome_r,
            z_dome_l=z_dome_r - self.u(8.0, 22.0),
            z_pubis=-5.0 * hl - self.u(95.0, 115.0) * size,
        )
        return an

    def _make_grid(self, max_inplane: int, max_slices: int) -> Canvas:
        an = self.an
        zs = np.linspace(an.z_pubis - 60, an.z_dome_r + 60, 64)
        a, hb, yc = an.outline(zs)
        b = hb + yc  # the front
        shift = np.array([self.jit(15.0), self.jit(10.0)])
        table_y = an.back_y - 1.0
        an.extra["table_y"] = table_y
        width = 2 * float(a.max()) + 2 * abs(shift[0]) + 30.0
        depth = float(b.max()) - table_y + 50.0 + 2 * abs(shift[1])
        fov = max(width, depth) * self.u(1.02, 1.12)
        n_xy = int(max_inplane)
        s_xy = max(0.7, fov / n_xy)
        z_top = an.z_dome_r + self.u(15.0, 45.0)
        if self.coverage == "full":
            z_bot = an.z_pubis - self.u(15.0, 45.0)
            s_z = max(self.u(3.0, 5.0), (z_top - z_bot) / (max_slices - 1))
            n_z = int(math.ceil((z_top - z_bot) / s_z - 1e-6)) + 1
        else:  # upper abdomen on thin slices: as far down as max_slices reach (the bladder is usually absent)
            s_z = self.u(1.5, 3.0)
            n_z = int(min(max_slices, math.ceil((z_top - an.z_pubis) / s_z)))
            z_bot = z_top - (n_z - 1) * s_z
        yaw = self.jit(3.0)
        t = np.array([shift[0], shift[1], self.u(-900.0, -300.0)])  # the patient's offset in the scanner
        centre_y = 0.5 * (float(b.max()) + table_y - 45.0)  # FOV centre (world y) before the offset
        origin = np.array([-0.5 * (n_xy - 1) * s_xy, centre_y - 0.5 * (n_xy - 1) * s_xy, z_bot + t[2]])
        return Canvas((n_xy, n_xy, n_z), (s_xy, s_xy, s_z), origin, yaw, t)

    # ---------------------------------------------------------------- region helpers
    def body_rho(self, box: Box, shrink: float = 0.0) -> np.ndarray:
        """Superellipse radius of the outline shrunk by ``shrink`` mm (<= 1 inside), the flat back included."""
        an = self.an
        x, y, z = self.canvas.coords(box)
        a, b, yc = an.outline(z)
        a, b, yc = (a - shrink).astype(np.float32), (b - shrink).astype(np.float32), yc.astype(np.float32)
        y = y - yc
        theta = np.arctan2(y, x)
        wobble = np.ones_like(theta)
        for k, amp, ph in an.harmonics:
            wobble = wobble + amp * np.cos(k * theta + ph)
        rho = (np.abs(x / a) ** an.p + np.abs(y / b) ** an.p) ** (1.0 / an.p) / wobble
        back = an.back_y - yc + 0.6 * shrink
        return np.where(y >= back, rho, np.float32(2.0))

    def cavity(self, box: Box) -> np.ndarray:
        """Inside the abdominal/thoracic cavity (inside the muscle wall)."""
        return self.body_rho(box, self.an.subq + self.an.wall) <= 1.0

    def below_dome(self, box: Box, margin: float = 4.0) -> np.ndarray:
        """Below the diaphragm (by ``margin`` mm, its muscle)."""
        x, y, z = self.canvas.coords(box)
        return z < self.an.dome(x, y) - margin

    def tex(self, box: Box, coarse: float, fine: float) -> np.ndarray:
        """Texture (HU) from the case's two smooth noise fields."""
        return coarse * self.tex_coarse[box.sl] + fine * self.tex_fine[box.sl]

    def perturb(self, box: Box, amp: float, cell_mm: float = 28.0) -> np.ndarray:
        """A smooth random field for bumping a surface (added to a normalised field)."""
        return amp * smooth_noise(self.rng, box.shape, [cell_mm / s for s in self.canvas.spacing])

    def blob_union(
        self, blobs: Sequence[dict], margin: float = 10.0, amp: float = 0.1
    ) -> tuple[Box, np.ndarray] | None:
        """Union (min) of superquadric fields, bumped by smooth noise; None if outside the volume."""
        lo = np.min([np.asarray(b["center"]) - max(b["radii"]) * 1.5 for b in blobs], axis=0) - margin
        hi = np.max([np.asarray(b["center"]) + max(b["radii"]) * 1.5 for b in blobs], axis=0) + margin
        box = self.canvas.box(lo, hi)
        if box is None:
            return None
        coords = self.canvas.coords(box)
        f = np.min([np.broadcast_to(superquadric(coords, **b), box.shape) for b in blobs], axis=0)
        return box, (f + self.perturb(box, amp)) if amp else f

    def paint_tube(self, points: Sequence[Sequence[float]], radii: Sequence[float], value: float) -> None:
        """Paint a solid :meth:`tube` (a vessel) with ``value``; nothing if it misses the volume."""
        t = self.tube(points, radii)
        if t:
            self.canvas.paint(t.box, t.q < 1.0, value)

    def tube(
        self, points: Sequence[Sequence[float]], radii: Sequence[float], scale: Sequence[float] = (1, 1, 1)
    ) -> Tube | None:
        """Balls swept along a spline through ``points``; ``scale`` stretches distances per axis (an elliptic
        cross-section). None if the tube misses the volume."""
        step = max(1.0, 0.3 * float(np.min(radii)), 0.5 * min(self.canvas.spacing))
        pts, rad = resample_path(points, radii, step)
        sc = np.asarray(scale, dtype=np.float64)
        reach = rad.max() / sc.min() + 2.0
        box = self.canvas.box(pts.min(0) - reach, pts.max(0) + reach)
        if box is None:
            return None
        q = np.full(box.shape, np.inf, dtype=np.float32)
        idx = np.full(box.shape, -1, dtype=np.int32)
        for n, (p, r) in enumerate(zip(pts, rad)):
            ext = r / sc + 1.0
            sub = self.canvas.box(p - ext, p + ext)
            rel = None if sub is None else box.inside(sub)
            if rel is None:
                continue
            sub = Box(tuple(slice(b.start + r_.start, b.start + r_.stop) for b, r_ in zip(box.sl, rel)))
            x, y, z = self.canvas.coords(sub)
            d = np.sqrt(((x - p[0]) * sc[0]) ** 2 + ((y - p[1]) * sc[1]) ** 2 + ((z - p[2]) * sc[2]) ** 2) / r
            qv, iv = q[rel], idx[rel]
            better = d < qv
            qv[better] = d[better]
            iv[better] = n
        return Tube(box, q, idx, pts, rad)

    # ---------------------------------------------------------------- painters
    def paint_table(self) -> None:
        """Carbon-fibre table: two thin shells around a foam core, curved up at the sides."""
        c = self.canvas
        top = self.an.extra["table_y"]
        box = c.box((-400, top - 60, -5000), (400, top + 5, 5000))
        if box is None:
            return
        x, y, _ = c.coords(box)
        surface = top + 0.0003 * x**2
        depth = surface - y
        in_table = (depth >= 0) & (depth <= 40)
        shell = in_table & ((depth <= 2.5) | (depth >= 37.5))
        c.paint(box, shell, self.hu["table_shell"], tissue=TABLE)
        c.paint(box, in_table, -950.0, tissue=TABLE)

    def paint_spine(self) -> None:
        """Vertebrae T5-L5 (bodies, discs, arches, spinous and transverse processes), the canal, and the sacrum."""
        an, c, hu = self.an, self.canvas, self.hu
        levels: list[tuple[float, float, bool]] = []  # (bottom, top, lumbar)
        for n in range(5):
            levels.append((-(n + 1) * an.hl, -n * an.hl, True))
        for n in range(8):
            levels.append((n * an.ht, (n + 1) * an.ht, False))
        # canal and cord first (the arches must not fill it)
        z_lo, z_hi = -5 * an.hl, 9 * an.ht
        zs = np.linspace(z_lo, z_hi, 12)
        canal = [(0.0, float(an.spine_y(z)) - 30.0 * an.size, z) for z in zs]
        t = self.tube(canal, [9.0 * an.size] * len(canal), scale=(0.85, 1.15, 1.0))
        if t:
            box, q = t.box, t.q
            c.paint(box, q < 1.0, hu["csf"])
        cancellous = hu["bone_cancellous"]
        for bottom, top, lumbar in levels:
            zc = 0.5 * (bottom + top)
            yc = float(an.spine_y(zc))
            height = top - bottom
            disc = 0.26 * height
            rx, ry = (24.0, 17.0) if lumbar else (17.0, 14.5)
            rx, ry = rx * an.size * (1 + 0.06 * (zc < -2 * an.hl)), ry * an.size
            body = {"center": (0.0, yc, zc + disc / 2), "radii": (rx, ry, (height - disc) / 2), "e1": 0.25}
            disc_b = {"center": (0.0, yc, bottom + disc / 2), "radii": (rx * 0.95, ry * 0.95, disc / 2), "e1": 0.25}
            res = self.blob_union([body], margin=4.0, amp=0.0)
            if res:
                box, f = res
                cortex = f > 1.0 - 2.2 / min(rx, ry)
                c.paint(
                    box, f < 1.0, np.where(cortex, hu["bone_cortex"], cancellous + self.tex(box, 20, 25)), tissue=BONE
                )
            res = self.blob_union([disc_b], margin=4.0, amp=0.0)
            if res:
                c.paint(res[0], res[1] < 1.0, hu["disc"])
            # posterior arch: pedicles + lamina ring around the canal, spinous and transverse processes
            y_canal = yc - 30.0 * an.size
            arch = [
                {"center": (0.0, y_canal, zc), "radii": (17.0 * an.size, 15.0 * an.size, height * 0.32)},
                {
                    "center": (0.0, y_canal - 24.0 * an.size, zc - 0.12 * height),
                    "radii": (3.5, 17.0 * an.size, height * 0.28),
                    "e2": 0.5,
                },
            ]
            tp_len = (45.0 if lumbar else 38.0) * an.size
            tp_y = y_canal + (3.0 if lumbar else -6.0)
            for side in (-1.0, 1.0):
                arch.append(
                    {
                        "center": (side * tp_len / 2, tp_y, zc + 0.1 * height),
                        "radii": (tp_len / 2, 4.5, 6.0),
                        "rot": rotation(side * (0 if lumbar else -25)),
                        "e2": 0.6,
                    }
                )
            res = self.blob_union(arch, margin=4.0, amp=0.0)
            if res:
                box, f = res
                c.paint(box, f < 1.0, np.where(f > 0.75, hu["bone_cortex"] * 0.8, cancellous + 80), tissue=BONE)
        # sacrum: a curved wedge from S1 down to the coccyx, concave forward
        y5 = float(an.spine_y(-5 * an.hl))
        s = an.size
        pts = [
            (0.0, y5, -5 * an.hl - 8),
            (0.0, y5 - 14 * s, -5 * an.hl - 45 * s),
            (0.0, y5 - 32 * s, -5 * an.hl - 85 * s),
            (0.0, y5 - 36 * s, -5 * an.hl - 120 * s),
        ]
        widths = [52.0 * s, 42.0 * s, 24.0 * s, 10.0 * s]
        t = self.tube(pts, widths, scale=(1.0, 2.6, 1.6))
        if t:
            box, q = t.box, t.q
            c.paint(
                box,
                q < 1.0,
                np.where(q > 0.8, hu["bone_cortex"] * 0.85, cancellous + self.tex(box, 20, 25)),
                tissue=BONE,
            )
        an.extra["sacrum_front_y"] = y5 - 32 * s + 52.0 * s / 2.6 * 0.5

    def paint_ribs(self) -> None:
        """Ribs 5-12 each side: from the transverse process round the inside of the wall, dropping anteriorly."""
        an, c, hu = self.an, self.canvas, self.hu
        for n, level in enumerate(range(5, 13)):
            z0 = (12 - level + 0.6) * an.ht
            theta_end = {5: 80, 6: 78, 7: 72, 8: 60, 9: 45, 10: 30, 11: -5, 12: -35}[level] + self.jit(6)
            drop = self.u(55.0, 90.0) * an.size * (1.0 - 0.05 * n)
            for side in (-1.0, 1.0):
                thetas = np.radians(np.linspace(-58.0, theta_end, 10))
                pts = [(side * 30.0 * an.size, float(an.spine_y(z0)) - 22.0 * an.size, z0)]
                for i, th in enumerate(thetas):
                    frac = i / (len(thetas) - 1)
                    z = z0 - drop * frac**1.3
                    a, b, yc = an.outline(z)
                    a_r, b_r = float(a) - an.subq - 0.55 * an.wall, float(b) - an.subq - 0.55 * an.wall
                    r = 1.0 / (abs(math.cos(th) / a_r) ** an.p + abs(math.sin(th) / b_r) ** an.p) ** (1.0 / an.p)
                    y = max(float(yc) + r * math.sin(th), an.back_y + 0.6 * an.subq + 0.5 * an.wall)
                    pts.append((side * r * math.cos(th), y, z))
                t = self.tube(pts, [4.8 * an.size] * len(pts))
                if not t:
                    continue
                box, q = t.box, t.q
                inside = q < 1.0
                cartilage = (t.idx > 0.82 * len(t.points)) & (level <= 10)
                c.paint(box, inside & cartilage, hu["cartilage"])
                bone = np.where(q > 0.55, hu["bone_cortex"] * 0.8, hu["bone_cancellous"])
                c.paint(box, inside, bone, tissue=BONE)

    def paint_pelvis(self) -> None:
        """Iliac wings (curved shells), acetabula and femoral heads/necks/shafts, pubic and ischial rami."""
        an, c, hu = self.an, self.canvas, self.hu
        A, B, s = an.A, an.B, an.size
        zp = an.z_pubis
        y_pub = B * 0.95 - 6.0
        an.extra["pubis_y"] = y_pub
        for side in (-1.0, 1.0):
            # iliac wing: a thin band of an ellipsoid shell, lateral and posterior half only
            # the lower half of an ellipsoid shell centred at the crest above the acetabulum, kept from the
            # sacro-iliac joint (postero-medial) round to the anterior superior iliac spine (antero-lateral): a
            # bowl narrowing down to the acetabulum, the iliac fossa facing forward and inward
            crest = -3.75 * an.hl + self.jit(6)
            ctr = (side * 0.52 * A, float(an.spine_y(-4.5 * an.hl)) + 0.35 * B, crest)
            radii = (0.40 * A * self.u(0.9, 1.1), 0.50 * B, crest - zp - 30.0)
            box_res = self.canvas.box(np.array(ctr) - max(radii) - 5, np.array(ctr) + max(radii) + 5)
            if box_res is not None:
                x, y, z = c.coords(box_res)
                f = np.broadcast_to(superquadric((x, y, z), ctr, radii), box_res.shape)
                shell = (f > 0.9) & (f < 1.0)
                phi = np.arctan2(y - ctr[1], side * (x - ctr[0]))
                keep = (phi > math.radians(-128)) & (phi < math.radians(35)) & (z < crest)
                c.paint(
                    box_res,
                    shell & keep,
                    np.where(f > 0.975, hu["bone_cortex"], hu["bone_cancellous"] + 60),
                    tissue=BONE,
                )
            # femoral head in the acetabulum, neck to the trochanter, shaft down
            head = (side * 0.62 * A, 0.05 * B, zp + 28.0 * s)
            troch = (side * 0.86 * A, -0.05 * B, zp + 10.0 * s)
            shaft = (side * 0.80 * A, 0.0, zp - 160.0 * s)
            for pts, rad in (
                ([head, troch], [22.0 * s, 17.0 * s]),
                ([troch, shaft], [17.0 * s, 14.0 * s]),
                ([(side * 0.55 * A, 0.02 * B, ctr[2] - 55 * s), head], [16.0 * s, 20.0 * s]),
                ([head, (side * 0.30 * A, 0.8 * y_pub, zp + 8), (side * 6.0, y_pub, zp)], [10.0 * s, 9.0 * s, 9.0 * s]),
                (
                    [head, (side * 0.45 * A, -0.2 * B, zp - 25 * s), (side * 0.2 * A, 0.2 * y_pub, zp - 40 * s)],
                    [12, 11, 9],
                ),
            ):
                t = self.tube(pts, rad)
                if t:
                    box, q = t.box, t.q
                    c.paint(box, q < 1.0, np.where(q > 0.75, hu["bone_cortex"], hu["bone_cancellous"]), tissue=BONE)

    def paint_vessels(self) -> None:
        """Aorta and IVC (labelled), iliac, renal, portal, splenic and mesenteric vessels (not labelled)."""
        an, c, hu = self.an, self.canvas, self.hu
        A, hl, s = an.A, an.hl, an.size
        sy = an.spine_y
        r_ao = self.u(0.85, 1.2)
        z_bif = -3.6 * hl + self.jit(10)
        ao = [
            (-24.0, float(sy(240)) + 4, 240.0),
            (-20.0, float(sy(100)) + 12, 100.0),
            (-12.0, float(sy(0)) + 26, 0.0),
            (-9.0, float(sy(-2 * hl)) + 29, -2 * hl),
            (-6.0, float(sy(z_bif)) + 30, z_bif),
        ]
        ao_r = [13.5 * r_ao, 12.5 * r_ao, 11.0 * r_ao, 10.0 * r_ao, 9.0 * r_ao]
        an.extra["aorta"] = ao  # type: ignore[assignment]
        t = self.tube(ao, ao_r)
        if t:
            box, q = t.box, t.q
            painted = c.paint(box, q < 1.0, hu["artery"] + self.tex(box, 0, 6), STRUCTURES["aorta"])
            if self.u(0, 1) < 0.5:  # calcified plaques on the wall
                plaque = painted & (q > 0.8) & (self.tex_fine[box.sl] > 2.2)
                c.hu[box.sl][plaque] = self.u(400, 900)
        z_conf = -4.3 * hl + self.jit(8)
        ivc = [
            (15.0, float(sy(z_conf)) + 24, z_conf),
            (22.0, float(sy(-2 * hl)) + 28, -2 * hl),
            (24.0, float(sy(-0.5 * hl)) + 36, -0.5 * hl),
            (22.0, float(sy(40)) + 46, 40.0),
            (14.0, float(sy(an.z_dome_r)) + 58, an.z_dome_r - 4),
            (8.0, float(sy(an.z_dome_r)) + 66, an.z_dome_r + 40),
        ]
        an.extra["ivc"] = ivc  # type: ignore[assignment]
        r_ivc = 11.5 * self.u(0.85, 1.2) * s
        t = self.tube(ivc, [r_ivc * 0.9, r_ivc, r_ivc, r_ivc * 1.05, r_ivc * 1.1, r_ivc * 1.2], scale=(1.0, 1.45, 1.0))
        if t:
            box, q = t.box, t.q
            vein = hu["vein_systemic"]
            if self.phase == "arterial":  # bright renal return above the renal veins, unopacified below
                zc = t.at(t.points[:, 2])
                vein = np.where(zc > -1.5 * hl, vein + 25.0, vein - 15.0)
            c.paint(box, q < 1.0, vein + self.tex(box, 0, 5), STRUCTURES["inferior vena cava"])
        bif = ao[-1]
        conf = ivc[0]
        zp = an.z_pubis
        for side in (-1.0, 1.0):
            art = [
                bif,
                (side * 42.0 * s, float(sy(-4.6 * hl)) + 24, -4.6 * hl),
                (side * 70 * s, 0.0, zp + 55),
                (side * 0.62 * A, 0.55 * an.B, zp + 20),
            ]
            vein = [
                conf,
                (side * 48.0 * s, float(sy(-4.9 * hl)) + 14, -4.9 * hl),
                (side * 74 * s, -0.08 * an.B, zp + 50),
                (side * 0.56 * A, 0.48 * an.B, zp + 18),
            ]
            for pts, rad, key in ((art, [7.0, 6.0, 5.0, 4.5], "artery"), (vein, [8.0, 7.0, 6.5, 6.0], "vein_systemic")):
                self.paint_tube(pts, [r * s for r in rad], hu[key])

    def paint_portal_system(self) -> None:
        """Portal vein (to the porta hepatis), splenic vein, SMV and SMA: unlabelled, posterior to the pancreas."""
        an, hu = self.an, self.hu
        A, hl, s, sy = an.A, an.hl, an.size, an.spine_y
        conf = (6.0, float(sy(-1.0 * hl)) + 47, -1.0 * hl)
        an.extra["portal_confluence"] = conf  # type: ignore[assignment]
        vessels = [
            (
                [conf, (24.0, float(sy(-0.4 * hl)) + 50, -0.4 * hl), (42.0 * s, float(sy(0)) + 48, 8.0)],
                [7.5, 7.0, 6.5],
                "vein_portal",
            ),
            (
                [
                    conf,
                    (-30.0 * s, float(sy(-0.8 * hl)) + 43, -0.8 * hl),
                    (-70.0 * s, float(sy(-0.3 * hl)) + 25, -0.3 * hl),
                    (-0.62 * A, float(sy(0)) + 8, 0.1 * hl),
                ],
                [5.5, 5.0, 5.0, 5.0],
                "vein_portal",
            ),
            (
                [conf, (9.0, float(sy(-1.7 * hl)) + 56, -1.7 * hl), (12.0, float(sy(-3.0 * hl)) + 72, -3.0 * hl)],
                [6.0, 5.0, 4.0],
                "vein_portal",
            ),
            (
                [
                    (-9.0, float(sy(-0.55 * hl)) + 36, -0.55 * hl),
                    (-6.0, float(sy(-1.3 * hl)) + 52, -1.3 * hl),
                    (-3.0, float(sy(-3.0 * hl)) + 70, -3.0 * hl),
                ],
                [4.0, 3.8, 3.0],
                "artery",
            ),
        ]
        for pts, rad, key in vessels:
            self.paint_tube(pts, rad, hu[key])

    def paint_muscles_deep(self) -> None:
        """Psoas (into iliopsoas), quadratus lumborum and the paraspinal muscles."""
        an, c, hu = self.an, self.canvas, self.hu
        hl, s, sy = an.hl, an.size, an.spine_y
        zp = an.z_pubis
        mus = hu["muscle"]
        for side in (-1.0, 1.0):
            psoas = [
                (side * 20.0 * s, float(sy(-0.2 * hl)) + 6, -0.2 * hl),
                (side * 34.0 * s, float(sy(-2 * hl)) + 6, -2 * hl),
                (side * 46.0 * s, float(sy(-3.5 * hl)) + 10, -3.5 * hl),
                (side * 58.0 * s, float(sy(-5 * hl)) + 22, -5 * hl),
                (side * 0.55 * an.A, 0.15 * an.B, zp + 45),
                (side * 0.62 * an.A, 0.35 * an.B, zp - 10),
            ]
            t = self.tube(psoas, [r * s for r in (6.0, 14.0, 20.0, 22.0, 20.0, 17.0)])
            if t:
                box, q = t.box, t.q
                c.paint(box, q < 1.0, mus + self.tex(box, 3, 5), tissue=MUSCLE)
            back_in = an.back_y + 0.6 * an.subq
            y_front = float(sy(-2 * hl)) - 24.0 * s
            depth = (y_front - back_in) / 2.0
            blobs = [
                {  # erector spinae beside the spinous processes
                    "center": (side * 30.0 * s, back_in + depth, -1.0 * hl),
                    "radii": (25.0 * s, depth + 2.0, 7.0 * hl),
                    "e1": 0.3,
                    "e2": 0.75,
                },
                {  # quadratus lumborum, lateral to the psoas, iliac crest to the 12th rib
                    "center": (side * 58.0 * s, float(sy(-2.2 * hl)) - 30.0, -2.2 * hl),
                    "radii": (21.0 * s, 11.0 * s, 1.9 * hl),
                    "rot": rotation(side * 25.0),
                    "e1": 0.6,
                    "e2": 0.8,
                },
            ]
            res = self.blob_union(blobs, margin=4.0, amp=0.05)
            if res:
                box, f = res
                c.paint(box, (f < 1.0) & (self.body_rho(box, an.subq) <= 1.0), mus + self.tex(box, 3, 5), tissue=MUSCLE)

    def paint_kidneys(self) -> None:
        """Kidneys: cortex and medulla (corticomedullary contrast in the arterial phase), a fatty sinus at the
        hilum that faces antero-medially, the renal pelvis; renal veins to the IVC and arteries from the aorta."""
        an, c, hu = self.an, self.canvas, self.hu
        hl, A = an.hl, an.A
        z_left = -0.85 * hl + self.jit(12)
        z_right = z_left - self.u(10.0, 28.0)
        for side, zc, name in ((-1.0, z_left, "left kidney"), (1.0, z_right, "right kidney")):
            k = an.size * self.u(0.9, 1.1)
            ctr = np.array([side * (0.46 * A + self.jit(5)), float(an.spine_y(zc)) + 4 + self.jit(4), zc])
            axes = axes_from((side * 0.22, 0.25, -1.0), (-side, 0.9, 0.0))
            radii = (55.0 * k, 28.0 * k, 21.0 * k)
            res = self.blob_union([{"center": ctr, "radii": radii, "rot": axes, "e1": 0.85, "e2": 0.85}], amp=0.05)
            if not res:
                continue
            box, f = res
            coords = c.coords(box)
            hilum = axes[:, 1]
            sinus = superquadric(coords, ctr + 0.58 * radii[1] * hilum, (30.0 * k, 15.0 * k, 11.0 * k), axes) < 1.0
            pelvis = superquadric(coords, ctr + 0.8 * radii[1] * hilum, (13.0 * k, 9.0 * k, 7.0 * k), axes) < 1.0
            kidney = (f < 1.0) & self.cavity(box)
            medulla = f < 0.62 + 0.12 * self.tex_fine[box.sl]
            parenchyma = np.where(medulla, hu["kidney_medulla"], hu["kidney_cortex"]) + self.tex(box, 3, 4)
            c.paint(box, kidney & pelvis, hu["urine"])
            c.paint(box, kidney & sinus, hu["fat_visceral"] + 15.0, tissue=FAT)
            c.paint(box, kidney & ~sinus, parenchyma, STRUCTURES[name])
            fat = hu["fat_visceral"] + self.tex(box, 5, 6)
            c.paint(box, (f < 1.18) & self.cavity(box), fat, tissue=FAT)  # perirenal fat
            # posterior pararenal fat: the kidney's outline extruded straight back to the posterior wall, so
            # nothing intraperitoneal (liver, colon) gets behind the kidney; on the left only up to mid-kidney
            # (the spleen may lie postero-lateral to the upper pole)
            back_in = an.back_y + 0.6 * an.subq
            depth = max(0.0, float(ctr[1]) - back_in)
            sbox = c.box(ctr - np.array([60.0, 60.0 + depth, 60.0]) * k, ctr + np.array([60.0, 10.0, 60.0]) * k)
            if sbox is not None:
                scoords = c.coords(sbox)
                shadow = np.zeros(sbox.shape, dtype=bool)
                for d in np.linspace(0.0, depth, max(2, int(depth / 6.0) + 1)):
                    shadow |= superquadric(scoords, ctr - np.array([0.0, d, 0.0]), radii, axes, 0.85, 0.85) < 1.1
                if side < 0:
                    shadow &= scoords[2] < zc
                c.paint(sbox, shadow & self.cavity(sbox), hu["fat_visceral"] + self.tex(sbox, 5, 6), tissue=FAT)
            an.extra[f"{name} z"] = float(zc)
            hilum_pt = ctr + 1.05 * radii[1] * hilum
            ivc_x = 22.0
            for pts, rad, key in (
                (
                    [
                        hilum_pt,
                        (-30.0, float(an.spine_y(zc)) + 46, zc + 6),
                        (ivc_x, float(an.spine_y(zc)) + 36, zc + 10),
                    ]
                    if side < 0
                    else [hilum_pt, (ivc_x, float(an.spine_y(zc)) + 36, zc + 8)],
                    [5.0, 5.0, 6.0] if side < 0 else [5.0, 6.0],
                    "vein_systemic",
                ),
                ([hilum_pt + (0, -6, 3), (-9.0, float(an.spine_y(zc)) + 28, zc + 12)], [3.0, 3.2], "artery"),
            ):
                self.paint_tube(pts, rad, hu[key])

    def paint_gallbladder(self) -> None:
        """Pear-shaped gallbladder under the liver: neck postero-superior, fundus antero-inferior."""
        an, c, hu = self.an, self.canvas, self.hu
        A, B, zr = an.A, an.B, an.z_dome_r
        g = self.u(0.8, 1.2)
        ls = an.extra["liver_scale"]
        pts = [
            (0.18 * A + self.jit(6), 0.02 * B, zr - 95 * ls),
            (0.25 * A, 0.28 * B, zr - 118 * ls),
            (0.32 * A + self.jit(8), 0.52 * B + self.jit(6), zr - 138 * ls + self.jit(8)),
        ]
        t = self.tube(pts, [6.0 * g, 13.5 * g, 16.0 * g])
        if t:
            box, q = t.box, t.q
            inside = (q < 1.0) & self.cavity(box)
            c.paint(box, inside, np.where(q > 0.85, hu["hollow_wall"], hu["bile"]), STRUCTURES["gallbladder"])

    def paint_pancreas(self) -> None:
        """Head in the duodenal sweep right of the SMV, neck and body across the aorta, tail to the splenic hilum."""
        an, c, hu = self.an, self.canvas, self.hu
        A, hl, s, sy = an.A, an.hl, an.size, an.spine_y
        p = self.u(0.85, 1.15)
        pts = [
            (38.0 * s, float(sy(-1.9 * hl)) + 45, -1.9 * hl),
            (30.0 * s, float(sy(-1.4 * hl)) + 55, -1.4 * hl),
            (8.0, float(sy(-1.1 * hl)) + 62, -1.1 * hl + self.jit(5)),
            (-30.0 * s, float(sy(-0.8 * hl)) + 58, -0.8 * hl),
            (-75.0 * s, float(sy(-0.3 * hl)) + 36, -0.3 * hl + self.jit(8)),
            (-0.62 * A, float(sy(0)) + 18, 0.15 * hl + self.jit(8)),
        ]
        rad = [14.0 * p, 18.0 * p, 10.0 * p, 11.0 * p, 11.0 * p, 8.5 * p]
        t = self.tube(pts, rad)
        if not t:
            return
        box, q = t.box, t.q
        bump = self.perturb(box, 0.12, 12.0)
        inside = (q + bump < 1.0) & self.cavity(box)
        lobules = self.tex_fine[box.sl]
        value = hu["pancreas"] + 8.0 * lobules
        value = np.where(lobules > 1.6 + self.u(0, 0.8), hu["fat_visceral"] + 40.0, value)  # fatty clefts
        c.paint(box, inside, value, STRUCTURES["pancreas"])

    def paint_spleen(self) -> None:
        """Crescent along the 10th rib, left upper quadrant, posterior; concave visceral (medial) surface."""
        an, c, hu = self.an, self.canvas, self.hu
        A, B = an.A, an.B
        k = an.size * self.u(0.85, 1.15)
        ctr = (-0.70 * A + self.jit(6), -0.38 * B + self.jit(8), an.z_dome_l - 52 * k + self.jit(8))
        axes = axes_from((-0.2, 0.55, -0.8), (1.0, 0.55, 0.0))
        axes = axes[:, [0, 2, 1]]  # u long, v width, w thickness (medial)
        blob = {"center": ctr, "radii": (55.0 * k, 36.0 * k, 19.0 * k), "rot": axes, "e1": 0.8, "e2": 0.8, "bend": 0.3}
        an.extra["spleen_bottom"] = ctr[2] - 50 * k
        res = self.blob_union([blob], amp=0.08)
        if not res:
            return
        box, f = res
        inside = (f < 1.0) & self.cavity(box) & self.below_dome(box)
        value = hu["spleen"] + self.tex(box, 4, 4)
        if self.phase == "arterial":  # arciform (zebra) enhancement
            value = value + 30.0 * np.sin(4.0 * smooth_noise(self.rng, box.shape, [10 / s for s in c.spacing]))
        c.paint(box, inside, value, STRUCTURES["spleen"])

    def paint_liver(self) -> None:
        """Right lobe filling the right subphrenic space, medial segment, left lobe over the stomach, caudate;
        clipped below the diaphragm and above a sloping inferior margin; hepatic and portal vessels inside."""
        an, c, hu = self.an, self.canvas, self.hu
        A, B, zr = an.A, an.B, an.z_dome_r
        ls = an.extra["liver_scale"]
        left = self.u(0.75, 1.25)
        e1, e2 = self.u(0.55, 0.8), self.u(0.6, 0.9)
        blobs = [
            {
                "center": (0.50 * A + self.jit(8), -0.05 * B + self.jit(8), zr - 60 * ls),
                "radii": (0.52 * A * ls, 0.85 * B * ls, 85 * ls),
                "rot": rotation(self.jit(10), self.jit(8)),
                "e1": e1,
                "e2": e2,
            },
            {
                "center": (0.12 * A, 0.30 * B, zr - 50 * ls),
                "radii": (0.32 * A * ls, 0.55 * B * ls, 55 * ls),
                "e1": 0.7,
                "e2": 0.8,
            },
            {
                "center": (-0.25 * A + self.jit(10), 0.45 * B, zr - 38 * ls),
                "radii": (0.36 * A * left, 0.38 * B * ls, 38 * ls * left),
                "rot": rotation(self.u(-20, 0), 0, self.jit(8)),
                "e1": 0.6,
                "e2": 0.7,
            },
            {"center": (0.12 * A, -0.22 * B, zr - 80 * ls), "radii": (22 * ls, 22 * ls, 32 * ls)},
        ]
        tip_x = 0.6 * A
        height = self.u(150.0, 185.0) * ls
        an.extra["liver_tip_z"] = zr - height
        res = self.blob_union(blobs, amp=0.08)
        if not res:
            return
        box, f = res
        x, y, z = c.coords(box)
        floor = zr - height + 0.38 * np.clip(tip_x - x, 0, None) + 0.12 * np.clip(y - 0.3 * B, 0, None)
        liver = (f < 1.0) & self.cavity(box) & self.below_dome(box) & (z > floor)
        value = hu["liver"] + self.tex(box, 4, 4)
        # intrahepatic vessels: hepatic veins fan out from the IVC, portal branches from the porta
        ivc_top = np.array(an.extra["ivc"][4])  # type: ignore[index]
        porta = np.array((42.0 * an.size, float(an.spine_y(0)) + 48, 8.0))
        branches = [
            ([ivc_top, (0.72 * A, -0.1 * B, zr - 70)], [6.0, 2.5], "vein_systemic"),
            ([ivc_top, (0.30 * A, 0.45 * B, zr - 95)], [5.5, 2.5], "vein_systemic"),
            ([ivc_top, (-0.20 * A, 0.50 * B, zr - 45)], [5.0, 2.5], "vein_systemic"),
            ([porta, (0.45 * A, 0.05 * B, zr - 100), (0.75 * A, 0.1 * B, zr - 125)], [6.0, 4.0, 2.5], "vein_portal"),
            ([porta, (0.05 * A, 0.35 * B, zr - 80), (-0.25 * A, 0.45 * B, zr - 50)], [5.0, 3.5, 2.5], "vein_portal"),
        ]
        for pts, rad, key in branches:
            t = self.tube(pts, rad)
            if not t:
                continue
            tb, q = t.box, t.q
            rel = box.inside(tb)  # into the liver box
            rel_t = tb.inside(box)  # into the tube box
            if rel is None or rel_t is None:
                continue
            sub = value[rel]
            sub[q[rel_t] < 1.0] = hu[key] + (10.0 if self.phase == "portal-venous" else 0.0)
        c.paint(box, liver, value, STRUCTURES["liver"])

    def paint_stomach(self) -> None:
        """Fundus under the left dome, body down and forward, antrum across the midline to the pylorus; wall, fluid
        or food, and gas collecting anteriorly (supine) above an air-fluid level."""
        an, c, hu = self.an, self.canvas, self.hu
        A, B, zl, sy = an.A, an.B, an.z_dome_l, an.spine_y
        d = self.u(0.8, 1.15) * an.size
        pts = [
            (-18.0, float(sy(zl - 30)) + 40, zl - 30),  # cardia, by the hiatus
            (-0.45 * A + self.jit(8), -0.12 * B, zl - 20 * d),  # fundus
            (-0.50 * A + self.jit(8), 0.22 * B, zl - 65 * d),  # body
            (-0.22 * A, 0.55 * B, zl - 105 * d + self.jit(10)),  # angular incisure
            (0.06 * A, 0.60 * B, zl - 108 * d),  # antrum
            (0.20 * A, 0.45 * B, zl - 98 * d),  # pylorus
        ]
        rad = [9.0, 34.0 * d, 30.0 * d, 24.0 * d, 19.0 * d, 10.0]
        an.extra["pylorus"] = pts[-1]  # type: ignore[assignment]
        t = self.tube(pts, rad)
        if not t:
            return
        box, q = t.box, t.q
        bump = self.perturb(box, 0.06, 20.0)
        inside = (q + bump < 1.0) & self.cavity(box) & self.below_dome(box)
        x, y, z = c.coords(box)
        wall = (q + bump) > 1.0 - 4.5 / np.maximum(t.at(t.radii), 5.0)
        lumen_y = np.broadcast_to(y, q.shape)
        gas_level = np.max(np.where(inside & ~wall, lumen_y, -1e9)) - self.u(8.0, 30.0)
        content = hu["gastric_fluid"] if self.u(0, 1) < 0.6 else 35.0 + 25.0 * self.tex_fine[box.sl]
        value = np.where(wall, hu["hollow_wall"], content)
        value = np.where(~wall & (lumen_y > gas_level), AIR, value)
        c.paint(box, inside, value, STRUCTURES["stomach"])

    def paint_duodenum(self) -> None:
        """Duodenal C-loop round the pancreatic head (not labelled): bulb, descending, horizontal, ascending."""
        an, c, hu = self.an, self.canvas, self.hu
        hl, s, sy = an.hl, an.size, an.spine_y
        pyl = an.extra["pylorus"]
        pts = [
            pyl,
            (45.0 * s, float(sy(-1.0 * hl)) + 55, -0.9 * hl),
            (58.0 * s, float(sy(-1.6 * hl)) + 42, -1.6 * hl),
            (55.0 * s, float(sy(-2.4 * hl)) + 45, -2.4 * hl),
            (10.0, float(sy(-2.7 * hl)) + 55, -2.7 * hl),
            (-28.0 * s, float(sy(-2.3 * hl)) + 50, -2.3 * hl),
            (-35.0 * s, float(sy(-1.7 * hl)) + 55, -1.7 * hl),
        ]
        t = self.tube(pts, [11.0 * s] * len(pts))
        if t:
            box, q = t.box, t.q
            inside = (q < 1.0) & self.cavity(box)
            c.paint(box, inside, np.where(q > 0.65, hu["hollow_wall"], hu["bowel_fluid"]))

    def paint_bladder(self) -> None:
        """Rounded bladder behind the pubic symphysis, in front of the rectum; thin wall, urine."""
        an, c, hu = self.an, self.canvas, self.hu
        fill = self.u(0.45, 1.5)
        r = np.array([42.0, 33.0, 31.0]) * fill ** (1.0 / 3.0) * an.size
        y_pub = an.extra["pubis_y"]
        y_rect = an.extra["sacrum_front_y"] + 24.0
        yc = max(y_pub - 6.0 - 0.8 * r[1], y_rect + 20.0 + r[1] + 3.0)
        ctr = (self.jit(8), yc, an.z_pubis + 6.0 + 0.9 * r[2])
        an.extra["bladder_top"] = ctr[2] + r[2]
        res = self.blob_union(
            [{"center": ctr, "radii": r, "e1": 0.8, "e2": 0.9, "rot": rotation(0, 0, self.jit(10))}], amp=0.04
        )
        if res:
            box, f = res
            inside = (f < 1.0) & (self.body_rho(box, an.subq + 0.6 * an.wall) <= 1.0)
            c.paint(box, inside, np.where(f > 0.93, hu["hollow_wall"], hu["urine"]), STRUCTURES["urinary bladder"])

    def paint_colon(self) -> None:
        """Caecum, ascending colon, hepatic flexure under the liver, sagging transverse colon, high splenic flexure,
        descending colon, sigmoid, rectum. Haustra modulate the radius; stool is mottled; gas collects anteriorly."""
        an, c, hu = self.an, self.canvas, self.hu
        A, B, hl = an.A, an.B, an.hl
        zp = an.z_pubis
        hep_z = min(-1.6 * hl, an.extra["liver_tip_z"] - 22.0)
        spl_z = min(-0.4 * hl, an.extra["spleen_bottom"] - 15.0)
        y_rect = an.extra["sacrum_front_y"] + 24.0
        sag = self.u(0.0, 1.0)
        pts = [
            (0.52 * A, 0.10 * B, -4.6 * hl),  # caecum
            (0.70 * A, 0.0, -3.4 * hl),
            (0.72 * A, -0.05 * B, -2.2 * hl),
            (0.58 * A, 0.15 * B, hep_z),  # hepatic flexure
            (0.30 * A, 0.58 * B, hep_z - 25 - 20 * sag),
            (0.0, 0.68 * B, -2.4 * hl - 40 * sag),  # transverse, sagging
            (-0.35 * A, 0.55 * B, -1.4 * hl - 10 * sag),
            (-0.68 * A, 0.05 * B, spl_z),  # splenic flexure
            (-0.74 * A, -0.20 * B, -2.0 * hl),
            (-0.70 * A, -0.15 * B, -3.6 * hl),  # descending
            (-0.52 * A, 0.10 * B, -4.7 * hl),
            (-0.15 * A, 0.35 * B, zp + 95),  # sigmoid
            (0.12 * A, 0.15 * B, zp + 75),
            (0.0, y_rect + 10, zp + 55),
            (0.0, y_rect, zp + 10),  # rectum
            (0.0, y_rect - 5, zp - 40),
        ]
        pts = [(p[0] + self.jit(6), p[1] + self.jit(6), p[2] + self.jit(6)) for p in pts]
        base = np.array([30, 25, 24, 23, 22, 21, 21, 21, 20, 19, 18, 17, 17, 18, 21, 18], dtype=np.float64)
        base *= self.u(0.85, 1.15) * an.size
        t = self.tube(pts, base)
        if not t:
            return
        box, q, samples = t.box, t.q, t.points
        # haustra: the radius swells and narrows along the arc length
        arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(samples, axis=0), axis=1))])
        period = self.u(28.0, 40.0)
        haustra = 1.0 + 0.12 * np.abs(np.sin(np.pi * arc / period))
        hq = q / t.at(haustra)
        inside = (hq < 1.0) & self.cavity(box)
        x, y, z = c.coords(box)
        wall = hq > 0.8
        # gas fills the anterior (non-dependent) part of the lumen; how much varies along the colon
        gas_share = np.interp(arc, np.linspace(0, arc[-1], len(pts)), self.rng.uniform(0.0, 0.45, len(pts)))
        level = (1.0 - 2.0 * t.at(gas_share)) * t.at(t.radii)
        gas = (y - t.at(samples[:, 1])) > level
        stool = -60.0 + 90.0 * self.tex_fine[box.sl] + 40.0 * self.tex_coarse[box.sl]
        bubbles = self.tex_fine[box.sl] < -1.3
        value = np.where(wall, hu["hollow_wall"], np.where(gas | bubbles, AIR, stool))
        c.paint(box, inside, value, STRUCTURES["colon"])

    def paint_small_bowel(self) -> None:
        """Loops of small bowel (not labelled) wandering through the mid and lower abdomen."""
        an, c, hu = self.an, self.canvas, self.hu
        A, B, hl = an.A, an.B, an.hl
        lo = np.array([-0.5 * A, float(an.spine_y(-3 * hl)) + 35, an.extra["bladder_top"] + 5])
        hi = np.array([0.5 * A, 0.8 * B, -1.3 * hl])
        for _ in range(int(self.rng.integers(6, 11))):
            p = lo + (hi - lo) * self.rng.random(3)
            direction = unit(self.rng.standard_normal(3))
            pts = [p.copy()]
            for _ in range(int(self.rng.integers(6, 11))):
                direction = unit(direction + 0.9 * self.rng.standard_normal(3))
                p = p + 24.0 * direction
                over, under = p > hi, p < lo
                direction[over | under] *= -1
                p = np.clip(p, lo, hi)
                pts.append(p.copy())
            r = self.u(9.0, 14.0)
            t = self.tube(pts, [r] * len(pts))
            if not t:
                continue
            box, q = t.box, t.q
            kind = self.rng.random()
            lumen = hu["bowel_fluid"] if kind < 0.55 else hu["hollow_wall"] - 5.0
            value = np.where(q > 0.7, hu["hollow_wall"], lumen)
            if kind > 0.85:
                value = np.where((q < 0.6) & (self.tex_fine[box.sl] > 0.5), AIR, value)
            c.paint(box, (q < 1.0) & self.cavity(box), value)

    def paint_thorax(self) -> None:
        """Above the diaphragm: heart (blood pool and myocardium), oesophagus, lung bases."""
        an, c, hu = self.an, self.canvas, self.hu
        A, B, zr = an.A, an.B, an.z_dome_r
        ctr = (-0.18 * A, 0.30 * B, zr + 62)
        res = self.blob_union([{"center": ctr, "radii": (0.58 * A, 0.62 * B, 75.0), "rot": rotation(-25)}], amp=0.04)
        blood = {"non-contrast": 40.0, "arterial": hu["artery"], "portal-venous": hu["vein_systemic"] + 10.0}[
            self.phase
        ]
        if res:
            box, f = res
            above = ~self.below_dome(box, 0.0)
            c.paint(box, (f < 1.0) & above & self.cavity(box), np.where(f > 0.8, hu["myocardium"], blood))
        oes = [
            (-16.0, float(an.spine_y(zr + 60)) + 22, zr + 80),
            (-18.0, float(an.spine_y(an.z_dome_l - 25)) + 38, an.z_dome_l - 25),
        ]
        t = self.tube(oes, [7.0, 8.0])
        if t:
            box, q = t.box, t.q
            c.paint(box, q < 1.0, np.where(q < 0.25, AIR, hu["hollow_wall"] - 5))
        box = c.box((-400, -400, an.z_dome_l - 130), (400, 400, 1000))
        if box:
            above = ~self.below_dome(box, 0.0)
            lung = above & self.cavity(box)
            vessels = np.clip(self.tex_fine[box.sl] - 1.2, 0, None) * 250.0
            c.paint(box, lung, hu["lung"] + vessels + self.tex(box, 15, 0), tissue=LUNG)

    def paint_wall_and_fat(self) -> None:
        """Diaphragm, abdominal wall muscles (linea alba gap), gluteal muscles, fat, skin, air outside."""
        an, c, hu = self.an, self.canvas, self.hu
        box = Box(tuple(slice(0, n) for n in c.shape))  # type: ignore[arg-type]
        x, y, z = c.coords(box)
        rho_body = self.body_rho(box)
        body = rho_body <= 1.0
        skin = body & (rho_body > 1.0 - 1.8 / an.a0)
        c.paint(box, skin, hu["skin"])
        rho_sub = self.body_rho(box, an.subq)
        inner = rho_sub <= 1.0
        cav = self.cavity(box)
        diaphragm = cav & (z < self.an.dome(x, y)) & ~self.below_dome(box, 4.0)
        c.paint(box, diaphragm, hu["muscle"], tissue=MUSCLE)
        mus = hu["muscle"] + self.tex(box, 3, 5)
        alba = (np.abs(x) < 4.0) & (y > 0)
        c.paint(box, inner & ~cav & ~alba, mus, tissue=MUSCLE)
        for side in (-1.0, 1.0):
            res = self.blob_union(
                [
                    {
                        "center": (side * 0.55 * an.a0, -0.60 * an.b0, an.z_pubis + 30),
                        "radii": (0.42 * an.a0, 0.42 * an.b0, 95.0),
                    }
                ],
                amp=0.06,
            )
            if res:
                gbox, f = res
                c.paint(
                    gbox,
                    (f < 1.0) & (self.body_rho(gbox, an.subq) <= 1.0),
                    hu["muscle"] + self.tex(gbox, 3, 5),
                    tissue=MUSCLE,
                )
        c.paint(box, cav, hu["fat_visceral"] + self.tex(box, 6, 8), tissue=FAT)
        c.paint(box, body, hu["fat_subq"] + self.tex(box, 5, 6), tissue=FAT)

    # ---------------------------------------------------------------- assembling
    def build(self) -> Case:
        """Paint everything, then blur and add noise."""
        self.an.extra["liver_scale"] = self.an.size * self.u(0.9, 1.1)
        for step in (
            self.paint_table,
            self.paint_spine,
            self.paint_ribs,
            self.paint_pelvis,
            self.paint_vessels,
            self.paint_portal_system,
            self.paint_muscles_deep,
            self.paint_kidneys,
            self.paint_gallbladder,
            self.paint_pancreas,
            self.paint_spleen,
            self.paint_liver,
            self.paint_stomach,
            self.paint_duodenum,
            self.paint_bladder,
            self.paint_colon,
            self.paint_small_bowel,
            self.paint_thorax,
            self.paint_wall_and_fat,
        ):
            step()
        c = self.canvas
        psf_mm = self.u(0.6, 1.2)
        sigma = [psf_mm / c.spacing[0], psf_mm / c.spacing[1], 0.35]
        image = ndimage.gaussian_filter(c.hu, sigma)
        noise_sd = self.u(6.0, 22.0) * (self.an.a0 / 160.0)
        noise = ndimage.gaussian_filter(self.rng.standard_normal(c.shape).astype(np.float32), 0.6)
        image += noise * (noise_sd / (noise.std() + 1e-6))
        hu = np.clip(np.rint(image), -1024, 3071).astype(np.int16)
        meta = {
            "phase": self.phase,
            "coverage": self.coverage,
            "spacing": [round(s, 3) for s in c.spacing],
            "shape": list(c.shape),
            "noise_sd": round(noise_sd, 1),
        }
        return Case(hu, c.label, c.affine, meta, c.tissue)


def make_case(
    seed: int,
    index: int,
    max_inplane: int = 160,
    max_slices: int = 120,
    coverage: str = "mixed",
    phase: str = "mixed",
) -> Case:
    """One phantom, reproducible from (seed, index) and the options. ``coverage`` "mixed" draws an upper-abdomen
    scan for one case in four, "full" always covers dome to pubis; ``phase`` "mixed" draws the contrast phase
    (non-contrast 1/4, arterial 1/4, portal-venous 1/2), otherwise fixes it."""
    if phase != "mixed" and phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; expected mixed or one of {', '.join(PHASES)}")
    rng = np.random.default_rng([seed, index])
    return Builder(rng, max_inplane, max_slices, coverage, phase).build()


def _nifti(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm")
    return img


def save_preview(path: Path, hu: np.ndarray, label: np.ndarray, affine: np.ndarray, title: str) -> None:
    """PNG: the three orthogonal mid-slices (row 1) and axial slices through liver, kidneys and bladder (row 2),
    labels overlaid, radiological display (patient's right on the image's left, anterior up)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    sp = np.abs(np.diag(affine)[:3])
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, 20))[: len(STRUCTURES)]
    cmap = ListedColormap(np.vstack([[0, 0, 0, 0], colours]))

    def show(ax: Any, img: np.ndarray, lab: np.ndarray, aspect: float, name: str) -> None:
        ax.imshow(img.T[::-1, ::-1], cmap="gray", vmin=-160, vmax=240, aspect=aspect, interpolation="nearest")
        over = np.ma.masked_equal(lab.T[::-1, ::-1], 0)
        ax.imshow(over, cmap=cmap, vmin=0, vmax=len(STRUCTURES), alpha=0.45, aspect=aspect, interpolation="nearest")
        ax.set_title(name, fontsize=8)
        ax.text(0.02, 0.5, "R", color="yellow", transform=ax.transAxes, fontsize=9)
        ax.axis("off")

    nx, ny, nz = hu.shape
    fig, axes = plt.subplots(2, 3, figsize=(13, 9))
    show(axes[0, 0], hu[:, :, nz // 2], label[:, :, nz // 2], sp[1] / sp[0], f"axial mid k={nz // 2}")
    show(axes[0, 1], hu[:, ny // 2, :], label[:, ny // 2, :], sp[2] / sp[0], f"coronal mid j={ny // 2}")
    show(axes[0, 2], hu[nx // 2, :, :], label[nx // 2, :, :], sp[2] / sp[1], f"sagittal mid i={nx // 2}")
    for ax, name in zip(axes[1], ("liver", "left kidney", "urinary bladder")):
        ks = np.nonzero((label == STRUCTURES[name]).any(axis=(0, 1)))[0]
        k = int(ks[len(ks) // 2]) if len(ks) else nz // 2
        show(ax, hu[:, :, k], label[:, :, k], sp[1] / sp[0], f"axial through {name} k={k}")
    handles = [Patch(color=colours[v - 1], label=n) for n, v in STRUCTURES.items()]
    fig.legend(handles=handles, loc="lower center", ncol=6, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_dataset(
    out: Path,
    cases: int,
    seed: int,
    max_inplane: int = 160,
    max_slices: int = 120,
    coverage: str = "mixed",
    preview: Path | None = None,
    phase: str = "mixed",
) -> list[dict]:
    """Write ``cases`` phantoms as an MSD-style folder at ``out`` (atomically: a temporary folder beside it is
    renamed into place). ``out`` must not exist or be an empty folder. Returns the ``training`` entries."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder; refusing to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        (tmp / "imagesTr").mkdir()
        (tmp / "labelsTr").mkdir()
        entries = []
        for i in range(cases):
            case_ = make_case(seed, i, max_inplane, max_slices, coverage, phase)
            hu, label, affine, meta = case_.hu, case_.label, case_.affine, case_.meta
            case = f"abd_{i:03d}"
            nib.save(_nifti(hu, affine), tmp / "imagesTr" / f"{case}.nii.gz")
            nib.save(_nifti(label, affine), tmp / "labelsTr" / f"{case}.nii.gz")
            voxel_ml = float(np.prod(np.abs(np.diag(affine)[:3]))) / 1000.0
            counts = np.bincount(label.ravel(), minlength=len(STRUCTURES) + 1)
            meta["volume_ml"] = {n: round(float(counts[v]) * voxel_ml, 1) for n, v in STRUCTURES.items()}
            entries.append(
                {
                    "image": f"./imagesTr/{case}.nii.gz",
                    "label": f"./labelsTr/{case}.nii.gz",
                    "targets": TARGETS,
                    **meta,
                }
            )
            if preview is not None:
                preview.mkdir(parents=True, exist_ok=True)
                title = f"{case} seed {seed}: {meta['phase']}, {meta['coverage']}, spacing {meta['spacing']}"
                save_preview(preview / f"{case}.png", hu, label, affine, title)
        meta_json = {
            "name": DATASET_NAME,
            "description": "Synthetic abdominal CT phantoms independent of the project's generator "
            "(benchmarks/independent_phantoms.py)",
            "seed": seed,
            "tensorImageSize": "3D",
            "modality": {"0": "CT"},
            "labels": {"0": "background", **{str(v): n for n, v in STRUCTURES.items()}},
            "numTraining": cases,
            "numTest": 0,
            "training": entries,
            "test": [],
        }
        (tmp / "dataset.json").write_text(json.dumps(meta_json, indent=1))
        os.chmod(tmp, 0o755)
        if out.exists():
            out.rmdir()
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return entries


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder to create (must not exist, or be empty)")
    p.add_argument("--cases", type=int, default=6)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--max-inplane", type=int, default=160, help="voxels per in-plane axis (default 160)")
    p.add_argument("--max-slices", type=int, default=120, help="most slices per case (default 120)")
    p.add_argument(
        "--coverage",
        choices=("mixed", "full"),
        default="mixed",
        help="mixed: 1 case in 4 is an upper-abdomen scan on thin slices; full: always liver dome to pubis",
    )
    p.add_argument(
        "--phase", choices=("mixed", *PHASES), default="mixed", help="contrast phase (default: drawn per case)"
    )
    p.add_argument("--preview", type=Path, help="also write one PNG per case here")
    a = p.parse_args(argv)
    if a.cases < 1 or a.max_inplane < 16 or a.max_slices < 8:
        p.error("--cases must be >= 1, --max-inplane >= 16 and --max-slices >= 8")
    return a


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    a = parse_args(argv)
    try:
        entries = write_dataset(a.out, a.cases, a.seed, a.max_inplane, a.max_slices, a.coverage, a.preview, a.phase)
    except FileExistsError as err:
        raise SystemExit(f"error: {err}") from None
    for e in entries:
        print(f"{Path(e['image']).name}: {e['phase']}, {e['coverage']}, spacing {e['spacing']}, shape {e['shape']}")
    print(f"wrote {len(entries)} cases to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
