"""``anatomy="wide"`` for the phantom generator: organs of other sizes, shapes and places than the default series.

The default series jitters each organ by a few millimetres around one layout, and the model learned that layout:
on phantoms drawn by other code (README "A phantom family the model never saw") it does not find the spleen, the
pancreas, the stomach or the aorta at all. Real patients differ far more: a spleen twice another's size, a liver
reaching the pelvis, kidneys at different heights. This module moves, resizes and turns each organ of a drawn
layout from its own random stream (so the default series stays byte-identical), within bounds: every sided organ
keeps its side of the body (nothing else is enforced; organs painted later cover earlier ones where they meet).
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
ANATOMIES = ("default", "wide")  # PhantomConfig.anatomy / --anatomy
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


def vary_layout(
    blobs: dict[str, Blob], sides: dict[str, int], tubes: dict[str, Tube], rng: np.random.Generator
) -> tuple[dict[str, Blob], dict[str, Tube]]:
    """Every blob and tube of a layout varied (in sorted name order, so the draws do not depend on dict order);
    ``sides`` names the sided blobs and the sign of their x."""
    varied_blobs = {name: vary_blob(blobs[name], rng, sides.get(name, 0)) for name in sorted(blobs)}
    varied_tubes = {name: vary_tube(tubes[name], rng) for name in sorted(tubes)}
    return varied_blobs, varied_tubes
