"""The phantom's great vessels.

``straight`` (the default; every series written before this option): the aorta and the inferior vena cava are two
straight tubes at a fixed place in front of the spine, through the whole scan, painted before the organs (which cover
them where they meet). ``course`` draws them as they run in a patient, from their own random stream:

- the aorta lies on the front of the vertebral bodies, left of the midline by a varying amount, wanders a little,
  narrows downwards, and divides into the two common iliac arteries 65-100 mm under the kidneys' centre (L4, about
  the iliac crest); the iliac arteries run down and out towards the pelvis and the groins, unlabelled;
- the inferior vena cava rises from the confluence of the two (unlabelled) common iliac veins a little under the
  aortic bifurcation, right of the aorta, and comes forward into the back of the liver (its intrahepatic segment);
- they are painted over the organs, so the liver no longer hides the IVC and no organ covers a vessel.

Only the aorta and the IVC carry labels; the iliac vessels are there so that "aorta" means the tube above the
bifurcation, not every enhanced tube in front of the spine.
"""

from __future__ import annotations

import numpy as np

from textdiffseg.data.phantom_canvas import Canvas
from textdiffseg.data.phantom_shapes import Tube

VESSEL_COURSES = ("straight", "course")


def _venous_hu(aorta_hu: float) -> float:
    """The IVC's and the iliac veins' HU: less enhanced than the aorta."""
    return aorta_hu * 0.6 + 30.0


def _paint_tube(c: Canvas, points: np.ndarray, radii: np.ndarray, hu: float, label: int) -> None:
    box, m, _ = Tube.through(points, radii).mask(c.grid)
    c.paint(box, m, hu, label)


def paint_straight_vessels(c: Canvas, y_front: float, aorta_hu: float, aorta_label: int, ivc_label: int) -> None:
    """The first series' vessels: two straight tubes through the scan, ``y_front`` the spine's front (mm)."""
    z_lo, z_hi = sorted((c.grid.axis_world(2)[0], c.grid.axis_world(2)[-1]))
    line = np.array([[0.0, y_front, z_lo - 5], [0.0, y_front, z_hi + 5]])
    _paint_tube(c, line + [-18.0, 14.0, 0.0], np.array([11.0, 11.0]), aorta_hu, aorta_label)
    _paint_tube(c, line + [24.0, 16.0, 0.0], np.array([10.0, 12.0]), _venous_hu(aorta_hu), ivc_label)


def _iliac(
    rng: np.random.Generator, start: np.ndarray, side: int, y_spine: float, r_start: float, vein: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Centre line and radii of one common + external iliac vessel from ``start`` (the bifurcation or confluence),
    on ``side`` (+1 the patient's right): down and out along the psoas, then forwards to the groin."""
    back = rng.uniform(0.0, 8.0) if vein else rng.uniform(5.0, 15.0)
    common = [side * rng.uniform(28.0, 42.0), start[1] - back, start[2] - rng.uniform(40.0, 60.0)]
    external = [side * rng.uniform(50.0, 72.0), y_spine + rng.uniform(35.0, 70.0), start[2] - rng.uniform(100.0, 140.0)]
    radius = rng.uniform(6.0, 8.0) if vein else rng.uniform(5.0, 7.0)
    return np.array([start, common, external]), np.array([r_start, radius, radius * 0.85])


def paint_vessel_course(
    c: Canvas,
    rng: np.random.Generator,
    y_spine: float,
    y_front: float,
    z_liver_low: float,
    aorta_hu: float,
    aorta_label: int,
    ivc_label: int,
) -> None:
    """Aorta, IVC and the iliac vessels as they run in a patient (module docstring), painted over whatever is there.

    ``y_spine`` / ``y_front``: the vertebral bodies' centre and front (mm); ``z_liver_low``: where the liver's lower
    part is (mm), above which the IVC comes forward into it."""
    z_top = float(max(c.grid.axis_world(2)[[0, -1]])) + 10.0
    ivc_hu = _venous_hu(aorta_hu)

    z_bif = rng.uniform(-100.0, -65.0)
    z = np.linspace(z_top, z_bif, 6)
    r_aorta = np.linspace(rng.uniform(10.0, 14.0), rng.uniform(8.0, 11.0), 6)
    x = rng.uniform(-20.0, -6.0) + rng.normal(0.0, 4.0, 6)
    x[-1] = rng.uniform(-10.0, 0.0)  # it divides near the midline
    y = y_front + r_aorta + rng.uniform(0.0, 4.0, 6)
    aorta = np.stack([x, y, z], axis=1)

    z_conf = z_bif - rng.uniform(10.0, 25.0)
    r_ivc = rng.uniform(9.0, 12.0)
    forward = rng.uniform(8.0, 22.0)  # intrahepatic segment: in front of the spine's level, into the liver
    z_ivc = np.array([z_conf, 0.5 * (z_conf + z_liver_low), z_liver_low, z_liver_low + 40.0, z_top])
    z_ivc = np.maximum.accumulate(np.minimum(z_ivc, z_top))
    x_ivc = np.array([rng.uniform(5.0, 15.0), *rng.uniform(18.0, 30.0, 4)])
    y_ivc = y_front + r_ivc + rng.uniform(0.0, 4.0, 5) + np.array([0.0, 0.0, 0.0, forward, forward])
    ivc = np.stack([x_ivc, y_ivc, z_ivc], axis=1)

    for side in (-1, 1):  # veins first: the arteries lie in front of them
        points, radii = _iliac(rng, ivc[0], side, y_spine, 0.8 * r_ivc, vein=True)
        _paint_tube(c, points, radii, ivc_hu, 0)
    _paint_tube(c, ivc, np.array([0.85, 0.9, 1.0, 1.0, 1.0]) * r_ivc, ivc_hu, ivc_label)
    for side in (-1, 1):
        points, radii = _iliac(rng, aorta[-1], side, y_spine, 0.75 * r_aorta[-1], vein=False)
        _paint_tube(c, points, radii, aorta_hu, 0)
    _paint_tube(c, aorta, r_aorta, aorta_hu, aorta_label)
