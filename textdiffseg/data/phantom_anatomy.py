"""``anatomy="wide"`` for the phantom generator: organs of other sizes, shapes and places than the default series.

The default series jitters each organ by a few millimetres around one layout, and the model learned that layout:
on phantoms drawn by other code (README "A phantom family the model never saw") it does not find the spleen, the
pancreas, the stomach or the aorta at all. Real patients differ far more: a spleen twice another's size, a liver
reaching the pelvis, kidneys at different heights. This module moves, resizes and turns each organ of a drawn
layout from its own random stream (so the default series stays byte-identical), within bounds: every sided organ
keeps its side of the body (nothing else is enforced; organs painted later cover earlier ones where they meet).

``anatomy="real"`` draws the same variation around another centre. `scripts/organ_layout.py` on the one labelled
real abdomen (`ts_abdomen`) against the default series (organ centroids relative to the body's extent, -1..+1)
shows the default layout's spleen 0.21 of the body's half-depth too far forward (-0.06 against -0.27), its
pancreas 0.18 too far back (+0.03 against +0.21) and 0.12 too far right, and its kidneys 0.12-0.18 too far back
(12 default cases; the offsets were read off the first 6): ``REAL_OFFSETS`` moves them there, in fractions of the
body's half-width and half-depth so that small and large bodies move alike. Only that one patient is used to set
them (the independent phantom family is a test set). Trained on, they did not make the independent family's spleen
found (README "Phantoms laid out like a patient").
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from textdiffseg.data.phantom_shapes import Blob, Tube

BLOB_SHIFT_MM = np.array([10.0, 8.0, 15.0])  # standard deviation of an organ's move (x, y, z)
BLOB_SCALE = (0.75, 1.3)  # each radius multiplied by a uniform draw from this range
BLOB_TURN_RAD = 0.35  # extra rotation about the body axis, either way
TUBE_SHIFT_MM = np.array([8.0, 6.0, 12.0])
TUBE_SCALE = (0.8, 1.3)  # the tube's radius
ANATOMIES = ("default", "wide", "real")  # PhantomConfig.anatomy / --anatomy
# organ -> (right, anterior) move of anatomy "real", as fractions of the body's half-width and half-depth
REAL_OFFSETS = {
    "spleen": (-0.11, -0.21),
    "pancreas": (-0.14, 0.20),
    "left kidney": (-0.05, 0.15),
    "right kidney": (-0.04, 0.15),
}
MIN_SIDE_OFFSET_MM = 30.0  # a sided organ's centre stays at least this far from the midline, on its own side


def vary_blob(blob: Blob, rng: np.random.Generator, side: int = 0) -> Blob:
    """``blob`` moved, resized and turned; ``side`` (-1 or +1, the sign of its x) keeps a sided organ on its side."""
    center = blob.center + rng.normal(0.0, BLOB_SHIFT_MM)
    if side:
        center[0] = side * max(MIN_SIDE_OFFSET_MM, side * center[0])
    return replace(
        blob,
        center=center,
        radii=blob.radii * rng.uniform(*BLOB_SCALE, size=3),
        angle=blob.angle + float(rng.uniform(-BLOB_TURN_RAD, BLOB_TURN_RAD)),
    )


def vary_tube(tube: Tube, rng: np.random.Generator) -> Tube:
    """``tube`` moved as a whole and made thinner or thicker."""
    return replace(
        tube,
        points=tube.points + rng.normal(0.0, TUBE_SHIFT_MM),
        radius=tube.radius * float(rng.uniform(*TUBE_SCALE)),
    )


def real_offset(name: str, half_x: float, half_y: float) -> np.ndarray:
    """The millimetre move of ``name`` under anatomy "real" (zero for organs ``REAL_OFFSETS`` does not list)."""
    right, anterior = REAL_OFFSETS.get(name, (0.0, 0.0))
    return np.array([right * half_x, anterior * half_y, 0.0])


def vary_layout(
    blobs: dict[str, Blob],
    sides: dict[str, int],
    tubes: dict[str, Tube],
    rng: np.random.Generator,
    body: tuple[float, float] | None = None,
) -> tuple[dict[str, Blob], dict[str, Tube]]:
    """Every blob and tube of a layout varied (in sorted name order, so the draws do not depend on dict order);
    ``sides`` names the sided blobs and the sign of their x. With ``body`` (its half-width and half-depth in mm)
    each organ is first moved by its ``REAL_OFFSETS`` (anatomy "real"); the random draws are the same either way."""
    if body is not None:
        blobs = {name: replace(b, center=b.center + real_offset(name, *body)) for name, b in blobs.items()}
        tubes = {name: replace(t, points=t.points + real_offset(name, *body)) for name, t in tubes.items()}
    varied_blobs = {name: vary_blob(blobs[name], rng, sides.get(name, 0)) for name in sorted(blobs)}
    varied_tubes = {name: vary_tube(tubes[name], rng) for name in sorted(tubes)}
    return varied_blobs, varied_tubes
