"""``context="rich"`` for the phantom generator: what lies around the organs in a real abdominal CT.

The default phantom is organs of distinct HU in a soft-tissue ellipse with a spine: no ribs, no pelvis, no stomach,
no bowel loops, no table. A model trained on it learned "a smooth blob brighter than its surroundings" and finds no
spleen, stomach or aorta in a phantom family drawn by other code, where organs lie among ribs and gas-filled bowel
(README "A phantom family the model never saw"); issue 12 asks for ribs, pelvis and bowel gas in training. Looking
at the one real abdomen (`ts_abdomen`) rather than at that family, this module paints, from its own random stream:

- **bones**: ribs 7-12-like arcs in the body wall above the kidneys (sloping down towards the front, the lower ones
  short), iliac wings and a sacrum below them;
- **muscles**: the psoas beside the lumbar spine, widening towards the pelvis;
- **hollow organs**: a stomach in the left upper quadrant (wall, fluid or food, an anterior gas cap) and loops of
  small bowel (gas, fluid or oral contrast) in the fat of the mid and lower abdomen;
- **the CT table**: two thin shells with foam between, a little below the back;
- **the liver's left lobe** across the midline in front of the stomach (a second blob labelled liver) and a
  **gallbladder** carved out of the liver's underside (fluid).

The left lobe is labelled liver; the stomach and the gallbladder carry their own labels since 2026-11-28 (before,
they were painted unlabelled). Structures painted here go down before the labelled organs (which cover them where
they meet) and only into fat, except bones.

``context="packed"`` is ``rich`` with organs packed together as in that family and in many patients with little
visceral fat: the stomach drawn against the spleen's front and inner side, and most of the fat inside the muscle
wall (40-90 %, in patches) turned into soft tissue (bowel wall and mesentery, 15-45 HU); labels as ``rich``, but
for a kidney tumour's part outside its kidney, which grows only into fat. Chosen from what the
served model does on that family (README "Phantoms with a patient's surroundings"): an independent spleen with its
50 mm surroundings pasted into a project phantom is found (Dice 0.61), a project phantom's spleen with the same
surroundings pasted into the independent CT is found (0.69), and with 75 mm of the independent CT around it neither
is; emptying the stomach beside it (to fat) makes it found in 2 of 4 cases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from textdiffseg.data.label_maps import PHANTOM_LATER_VALUES
from textdiffseg.data.phantom_canvas import Canvas
from textdiffseg.data.phantom_shapes import Blob, Box, Tube

CONTEXTS = ("plain", "rich", "packed")  # PhantomConfig.context / --context
BODY_CENTRE_Y_MM = -10.0  # the body ellipse's centre (phantom._paint_body)
FAT_MAX_HU = -20.0  # context soft tissue goes only where the canvas still holds fat (or air)
BONE_HU = (250.0, 700.0)  # marrow, cortex
GAS_HU = -900.0


@dataclass(frozen=True)
class Body:
    """The drawn body: half-width and half-depth (mm), fat-layer share of the radius, spine depth (y, mm)."""

    half_x: float
    half_y: float
    fat_layer: float
    y_spine: float

    def wall_point(self, side: int, angle: float, depth: float) -> np.ndarray:
        """(x, y) of the body-wall ellipse at ``depth`` (share of the radius), ``angle`` from the back midline
        (0 the back, pi the front), on ``side`` (+1 the patient's right, -1 the left)."""
        return np.array(
            [side * self.half_x * depth * np.sin(angle), BODY_CENTRE_Y_MM - self.half_y * depth * np.cos(angle)]
        )


def _paint_bone(c: Canvas, box: Box | None, mask: np.ndarray, rel: np.ndarray) -> None:
    """Marrow inside, cortex in the outer part (``rel`` 0 at the centre, 1 at the surface); never over a labelled
    organ (bones go down after the organs, so that the liver does not cover the ribs it lies against). The
    structures labelled later (vessels, stomach, gallbladder: ``PHANTOM_LATER_VALUES``) are painted over as they were
    while unlabelled, and lose their label there."""
    if box is not None:
        hu = np.where(rel > 0.6, BONE_HU[1], BONE_HU[0]).astype(np.float32)
        free = np.isin(c.label[box], (0, *PHANTOM_LATER_VALUES))
        c.paint(box, mask, np.broadcast_to(hu, mask.shape), label=0, within=free)


def _in_fat(c: Canvas, box: Box | None) -> np.ndarray | None:
    return None if box is None else c.hu[box] < FAT_MAX_HU


def paint_ribs(c: Canvas, body: Body, rng: np.random.Generator) -> None:
    """Rib arcs in the body wall from the lowest rib (posterior end 10-35 mm above the kidneys' centre) upwards."""
    z_top = float(c.grid.axis_world(2).max())
    depth = 1.0 - body.fat_layer - 0.03  # inside the muscle wall
    spacing, z_back, k = float(rng.uniform(22.0, 30.0)), float(rng.uniform(10.0, 35.0)), 0
    while z_back < z_top + 40.0:
        reach = min(2.6, 1.3 + 0.3 * k + rng.uniform(-0.1, 0.1))  # lower ribs end laterally, upper ones in front
        drop = rng.uniform(30.0, 60.0)
        radius = rng.uniform(4.0, 6.0)
        for side in (-1, 1):
            angles = np.linspace(0.35, reach, 8)
            xy = np.stack([body.wall_point(side, a, depth) for a in angles])
            z = z_back - drop * (angles - angles[0]) / (angles[-1] - angles[0]) + rng.normal(0, 2)
            box, mask, rel = Tube.through(np.column_stack([xy, z]), np.full(8, radius)).mask(c.grid)
            _paint_bone(c, box, mask, rel)
        z_back += spacing
        k += 1


def paint_psoas(c: Canvas, body: Body, rng: np.random.Generator, muscle_hu: float) -> None:
    """Psoas muscles beside the lumbar spine, widening towards the pelvis (into fat only)."""
    for side in (-1, 1):
        psoas = Tube.through(
            np.array(
                [
                    [side * 28.0, body.y_spine + 8, 40.0],
                    [side * 45, body.y_spine + 14, -40],
                    [side * 62, body.y_spine + 30, -130],
                ]
            )
            + rng.normal(0, 3, (3, 3)),
            [6.0, rng.uniform(13, 18), rng.uniform(18, 25)],
        )
        box, mask, _ = psoas.mask(c.grid)
        c.paint(box, mask, muscle_hu + rng.uniform(-8, 8), within=_in_fat(c, box))


def paint_pelvis(c: Canvas, body: Body, rng: np.random.Generator) -> None:
    """Iliac wings and a sacrum below an iliac crest 80-115 mm under the kidneys' centre."""
    z_crest = float(rng.uniform(-115.0, -80.0))
    for side in (-1, 1):
        wing = Blob.random(
            rng,
            np.array([side * 0.55 * body.half_x, body.y_spine + 20.0, z_crest - 45.0]) + rng.normal(0, 4, 3),
            np.array([rng.uniform(9, 14), rng.uniform(40, 55), 45.0]),
            roughness=0.05,
            angle=side * rng.uniform(0.4, 0.8),
        )
        box, mask = wing.mask(c.grid)
        if box is not None:
            _paint_bone(c, box, mask, 1.0 - (1.0 - wing.level(c.grid, box)) * 4.0)
    sacrum = Blob.random(
        rng, np.array([0.0, body.y_spine, z_crest - 55.0]), np.array([40.0, 16.0, 45.0]), roughness=0.05
    )
    box, mask = sacrum.mask(c.grid)
    if box is not None:
        _paint_bone(c, box, mask, sacrum.level(c.grid, box))


def paint_table(c: Canvas, body: Body, rng: np.random.Generator) -> None:
    """The CT table in 70 % of cases: two 5 mm shells, foam between, curving up at the edges, below the back."""
    if rng.random() >= 0.7:
        return
    top = BODY_CENTRE_Y_MM - body.half_y - float(rng.uniform(5.0, 30.0))
    thickness, curve = float(rng.uniform(30.0, 50.0)), float(rng.uniform(0.0, 0.0012))
    half_width = body.half_x * float(rng.uniform(0.9, 1.2))
    box = c.grid.box(np.array([-half_width, top - thickness - 5, -1e4]), np.array([half_width, top + 40, 1e4]))
    if box is None:
        return
    x, y, _ = c.grid.open_coords(box)
    below = top + curve * x**2 - y  # mm below the table's top surface
    outside = c.hu[box] < -900
    shell = ((below >= 0) & (below < 5.0)) | ((below >= thickness - 5.0) & (below < thickness))
    foam = (below >= 5.0) & (below < thickness - 5.0)
    shell, foam = np.broadcast_to(shell, outside.shape), np.broadcast_to(foam, outside.shape)
    c.paint(box, shell, float(rng.uniform(150, 400)), within=outside)
    c.paint(box, foam, float(rng.uniform(-900, -700)), within=outside)


def paint_stomach(
    c: Canvas,
    body: Body,
    rng: np.random.Generator,
    phase: float,
    z_liver: float,
    label: int,
    spleen: Blob | None = None,
) -> None:
    """A stomach (label value ``label``) in the left upper quadrant: enhancing wall, fluid or food, a gas cap in front
    in 70 % of cases.

    Given the ``spleen``, it is drawn against the spleen's front and inner (right) side instead."""
    centre = np.array([-0.3 * body.half_x, BODY_CENTRE_Y_MM + 0.25 * body.half_y, z_liver - rng.uniform(5, 25)])
    if spleen is not None:
        centre = spleen.center + np.array([rng.uniform(35, 50), rng.uniform(15, 35), rng.uniform(-10, 15)])
    radii = np.array([rng.uniform(30, 45), rng.uniform(22, 32), rng.uniform(35, 50)])
    stomach = Blob.random(rng, centre + rng.normal(0, 6, 3), radii, angle=rng.uniform(-0.5, 0.2))
    box, mask = stomach.mask(c.grid)
    if box is None:
        return
    level = stomach.level(c.grid, box)
    y = c.grid.open_coords(box)[1]
    content = rng.uniform(0, 30) if rng.random() < 0.6 else rng.uniform(20, 60)
    hu = np.where(level > 0.85, 40.0 + 25.0 * phase, content)
    if rng.random() < 0.7:
        hu = np.where((level <= 0.85) & (y > stomach.center[1] + radii[1] * rng.uniform(-0.1, 0.5)), GAS_HU, hu)
    c.paint(box, mask, hu.astype(np.float32), label, within=_in_fat(c, box))


def pack_cavity(c: Canvas, body: Body, rng: np.random.Generator) -> None:
    """Turn 40-90 % of the fat inside the muscle wall, in smooth patches, into soft tissue (15-45 HU)."""
    box = tuple(slice(0, n) for n in c.grid.shape)
    x, y, _ = c.grid.open_coords(box)
    depth = 1.0 - body.fat_layer - 0.04
    inside = (x / body.half_x) ** 2 + ((y - BODY_CENTRE_Y_MM) / body.half_y) ** 2 < depth**2
    fat = inside & (c.hu > -200.0) & (c.hu < FAT_MAX_HU)
    if not fat.any():
        return
    field = c.texture(box, c.grid.shape, 0.0, 1.0, rng)
    soft = fat & (field > np.quantile(field[fat], 1.0 - rng.uniform(0.4, 0.9)))
    c.paint(box, soft, c.texture(box, c.grid.shape, float(rng.uniform(15, 45)), 8.0, rng))


def paint_small_bowel(c: Canvas, body: Body, rng: np.random.Generator, phase: float) -> None:
    """5-9 loops of small bowel in the fat of the mid and lower abdomen: gas, fluid or oral contrast inside."""
    for _ in range(int(rng.integers(5, 10))):
        start = np.array(
            [
                rng.uniform(-0.5, 0.5) * body.half_x,
                BODY_CENTRE_Y_MM + rng.uniform(-0.1, 0.6) * body.half_y,
                rng.uniform(-110, 10),
            ]
        )
        control = start + np.cumsum(rng.normal(0, 18, (4, 3)), axis=0)
        loop = Tube.through(control, np.full(4, rng.uniform(9.0, 14.0)))
        box, mask, rel = loop.mask(c.grid)
        if box is None:
            continue
        kind = rng.random()
        lumen = GAS_HU if kind < 0.3 else rng.uniform(0, 30) if kind < 0.8 else rng.uniform(150, 300)
        hu = np.where(rel > 0.75, 40.0 + 20.0 * phase, lumen).astype(np.float32)
        c.paint(box, mask, hu, within=_in_fat(c, box))


def left_lobe(body: Body, liver: Blob, rng: np.random.Generator) -> Blob:
    """The liver's left lobe: across the midline, in front, in the liver's upper half."""
    centre = np.array(
        [
            -rng.uniform(0.05, 0.25) * body.half_x,
            BODY_CENTRE_Y_MM + rng.uniform(0.45, 0.6) * body.half_y,
            liver.center[2] + rng.uniform(0, 25),
        ]
    )
    radii = np.array(
        [rng.uniform(0.25, 0.35) * body.half_x, rng.uniform(0.15, 0.22) * body.half_y, rng.uniform(25, 40)]
    )
    return Blob.random(rng, centre, radii, angle=rng.uniform(-0.3, 0.3))


def carve_gallbladder(c: Canvas, liver: Blob, liver_value: int, label: int, rng: np.random.Generator) -> None:
    """A fluid gallbladder (label value ``label``) under the liver's medial front, taken out of the liver label."""
    centre = liver.center + liver.radii * np.array([-0.35, 0.35, -0.55]) + rng.normal(0, 4, 3)
    blob = Blob.random(rng, centre, np.array([rng.uniform(12, 16), rng.uniform(14, 20), rng.uniform(25, 35)]))
    box, mask = blob.mask(c.grid)
    if box is not None:
        liver_or_fat = (c.label[box] == liver_value) | (c.hu[box] < FAT_MAX_HU)
        c.paint(box, mask, float(rng.uniform(0, 25)), label=label, within=liver_or_fat)
