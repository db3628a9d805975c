"""Synthetic contrast-enhanced abdominal CT phantoms with organ and tumour labels and a text description.

Run ``python -m textdiffseg.data.phantom --out DIR --n N --seed S`` to write an MSD-style task folder
(``imagesTr/``, ``labelsTr/``, ``dataset.json``) plus the flat layout a MONAI Label local datastore reads
(images at the top, ``labels/final/``). Case ``i`` of seed ``S`` is the same on every machine.

What is simulated: a body outline with subcutaneous fat, muscle wall and visceral fat; spine with cortical shell and
canal; aorta and IVC; liver, spleen, both kidneys (cortex brighter than medulla), pancreas, a colon segment with gas or
fluid in its lumen; tumours in liver / kidney / pancreas / colon present in some cases. HU per tissue vary per case
(contrast timing), organs have smooth random shapes and positions, and the scanner adds blur and noise. Spacing is
random in-plane (0.6-1.0 mm) and through-plane (1.5-5 mm) unless fixed, so sizes reach 512x512x200. ``--context
rich`` adds what surrounds the organs in a patient: ribs, pelvis, psoas, stomach, small bowel, a table, the liver's
left lobe and a gallbladder (``textdiffseg.data.phantom_context``). ``--vessels course`` lays the aorta on the spine,
lets it wander and divide into the iliac arteries, and brings the IVC up from the iliac veins into the liver
(``textdiffseg.data.phantom_vessels``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.ndimage import gaussian_filter

from textdiffseg.data.label_maps import PHANTOM_LABEL_NAMES, PHANTOM_LATER_VALUES
from textdiffseg.data.phantom_anatomy import ANATOMIES, vary_layout
from textdiffseg.data.phantom_canvas import Canvas
from textdiffseg.data.phantom_context import (
    CONTEXTS,
    Body,
    carve_gallbladder,
    left_lobe,
    pack_cavity,
    paint_pelvis,
    paint_psoas,
    paint_ribs,
    paint_small_bowel,
    paint_stomach,
    paint_table,
)
from textdiffseg.data.phantom_shapes import Blob, Box, Tube, VoxelGrid
from textdiffseg.data.phantom_vessels import VESSEL_COURSES, paint_straight_vessels, paint_vessel_course

LABEL_VALUE = {name: value for value, name in PHANTOM_LABEL_NAMES.items()}
TUMOUR_HOSTS = ("liver", "kidney", "pancreas", "colon")


@dataclass(frozen=True)
class PhantomConfig:
    """Acquisition ranges and content. ``spacing`` fixes the voxel size (mm) instead of drawing it at random."""

    inplane_spacing_mm: tuple[float, float] = (0.6, 1.0)
    slice_thickness_mm: tuple[float, float] = (1.5, 5.0)
    max_matrix: int = 512
    max_slices: int = 200
    spacing: tuple[float, float, float] | None = None
    tumour_probability: float = 0.4
    force_one_tumour: bool = True  # tumour type (index % 4) always present; False + probability 0 = tumour-free
    randomise: str = "default"  # "wide": + contrast phase, per-structure HU shifts, noise, blur, slice thickness
    anatomy: str = "default"  # "wide": organs moved, resized and turned far more; "real": the same around a real
    # abdomen's organ positions (textdiffseg.data.phantom_anatomy)
    context: str = "plain"  # "rich": + ribs, pelvis, psoas, stomach, small bowel, table, liver left lobe,
    # gallbladder; "packed": rich with organs packed in soft tissue (textdiffseg.data.phantom_context)
    vessels: str = "straight"  # "course": the aorta follows the spine and divides into the iliac arteries, the IVC
    # rises from the iliac veins into the liver (textdiffseg.data.phantom_vessels)


def _widen(hu: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> tuple:
    """``randomise="wide"`` on a painted case (before the scanner stage), from its own random stream: a contrast
    phase (non-contrast compresses every enhancement towards 40 HU; arterial brightens vessels), a random HU
    shift per structure, and scanner settings for the stage after (blur factor, noise level, slice thickness)."""
    phase = rng.choice(["non-contrast", "arterial", "venous", "delayed"])
    soft = (hu > 0) & (hu < 400)
    if phase == "non-contrast":
        hu[soft] = 40.0 + (hu[soft] - 40.0) * rng.uniform(0.15, 0.4)
    elif phase == "arterial":
        vessels = (hu > 180) & (hu < 400)  # aorta and kidney cortex: arterial enhancement
        hu[vessels] += rng.uniform(80, 200)
    for value in np.unique(label):
        if value and value not in PHANTOM_LATER_VALUES:  # no draws for them: the series stays what it was
            hu[label == value] += rng.uniform(-30.0, 30.0)
    hu += rng.uniform(-25.0, 25.0)  # calibration
    blur = float(rng.uniform(0.5, 1.8))
    noise = float(rng.uniform(5.0, 45.0))
    thick = float(rng.uniform(0.0, 2.0)) if rng.random() < 0.5 else 0.0  # extra z blur (mm / spacing)
    return blur, noise, thick, str(phase)


@dataclass
class PhantomCase:
    """One generated case: HU image, integer label map, geometry and what it contains."""

    image: np.ndarray  # int16 HU, (x, y, z)
    label: np.ndarray  # uint8, values of PHANTOM_LABEL_NAMES
    affine: np.ndarray
    description: str
    tumours: dict[str, int] = field(default_factory=dict)  # host organ -> number of lesions


def _draw_grid(rng: np.random.Generator, cfg: PhantomConfig) -> VoxelGrid:
    if cfg.spacing is not None:
        sx, sy, sz = (float(s) for s in cfg.spacing)
    else:
        sx = sy = float(rng.uniform(*cfg.inplane_spacing_mm))
        sz = float(
            rng.choice([1.5, 2.0, 2.5, 3.0, 5.0]) if rng.random() < 0.6 else rng.uniform(*cfg.slice_thickness_mm)
        )
    fov = float(rng.uniform(340.0, 420.0))
    nxy = int(min(cfg.max_matrix, round(fov / sx)))
    coverage = float(rng.uniform(270.0, 320.0))
    nz = int(min(cfg.max_slices, round(coverage / sz)))
    z_centre = float(rng.uniform(0.0, 25.0))
    # voxel 0 sits at the patient's left-posterior corner (LPS order), so world x, y decrease with the index.
    origin = (sx * (nxy - 1) / 2, sy * (nxy - 1) / 2, z_centre - sz * (nz - 1) / 2)
    return VoxelGrid(shape=(nxy, nxy, nz), spacing=(sx, sy, sz), origin=origin)


def _paint_body(c: Canvas, half_x: float, half_y: float, fat_hu: float, muscle_hu: float) -> float:
    """Body ellipse: subcutaneous fat, muscle wall, visceral fat. Returns the fat layer's share of the radius."""
    g = c.grid
    box = (slice(None), slice(None), slice(None))
    x, y, z = g.open_coords(box)
    sway = 1.0 + 0.03 * np.sin(z / 90.0 + c.rng.uniform(0, 6.3))
    rho = np.sqrt((x / (half_x * sway)) ** 2 + ((y + 10.0) / (half_y * sway)) ** 2)
    fat_layer = c.rng.uniform(0.06, 0.14)
    body = rho < 1.0
    c.hu[body] = fat_hu
    wall = (rho < 1.0 - fat_layer) & (rho > 1.0 - fat_layer - 0.06)
    c.hu[wall] = muscle_hu
    visceral = rho <= 1.0 - fat_layer - 0.06
    c.hu[visceral] = fat_hu + 15.0
    return float(fat_layer)


def _paint_spine(c: Canvas, half_y: float, muscle_hu: float) -> tuple[float, float]:
    """Spine and paraspinal muscles. Returns the y (mm) of the vertebral bodies' centre and of their front."""
    g, rng = c.grid, c.rng
    z_lo, z_hi = sorted((g.axis_world(2)[0], g.axis_world(2)[-1]))
    y_spine = -half_y * 0.45 - 10.0
    r_body = rng.uniform(16.0, 21.0)
    line = np.array([[0.0, y_spine, z_lo - 5], [0.0, y_spine, z_hi + 5]])
    for side in (-1, 1):
        muscle = Tube.through(line + [side * 36.0, -22.0, 0.0], [24.0, 24.0])
        box, m, _ = muscle.mask(g)
        c.paint(box, m, muscle_hu)
    box, vb, rel = Tube.through(line, [r_body, r_body]).mask(g)
    if box is not None:
        z = g.open_coords(box)[2]
        disc = (np.mod(z - rng.uniform(0, 30), 32.0) < 6.0) & np.ones_like(vb)
        c.paint(box, vb, np.where(disc, 85.0, np.where(rel > 0.8, 750.0, 260.0)).astype(np.float32))
    canal = Tube.through(line + [0.0, -r_body - 9.0, 0.0], [8.0, 8.0])
    box, m, rel = Tube.through(line + [0.0, -r_body - 9.0, 0.0], [14.0, 14.0]).mask(g)
    c.paint(box, m & (rel > 0.55), 600.0)  # posterior arch
    box, m, _ = canal.mask(g)
    c.paint(box, m, 15.0)
    return y_spine, y_spine + r_body


def _organ(
    c: Canvas, blob: Blob, name: str, base_hu: float, texture: float = 8.0, rng: np.random.Generator | None = None
) -> tuple[Box | None, np.ndarray]:
    box, m = blob.mask(c.grid)
    if box is not None and m.any():
        c.paint(box, m, c.texture(box, m.shape, base_hu, texture, rng), LABEL_VALUE[name])
    return box, m


def _lesion_blob(rng: np.random.Generator, centre: np.ndarray, r_lo: float, r_hi: float) -> Blob:
    r = rng.uniform(r_lo, r_hi)
    return Blob.random(rng, centre, r * rng.uniform(0.8, 1.2, 3), roughness=0.12, angle=rng.uniform(0, np.pi))


def _point_inside(rng: np.random.Generator, blob: Blob, scale: float = 0.55) -> np.ndarray:
    return blob.center + blob.radii * rng.uniform(-scale, scale, 3)


def generate_case(seed: int, index: int, cfg: PhantomConfig | None = None) -> PhantomCase:
    """Generate case ``index`` of the phantom series ``seed`` (deterministic for a given pair)."""
    cfg = cfg or PhantomConfig()
    if cfg.anatomy not in ANATOMIES:
        raise ValueError(f"anatomy must be one of {ANATOMIES}, got {cfg.anatomy!r}")
    if cfg.context not in CONTEXTS:
        raise ValueError(f"context must be one of {CONTEXTS}, got {cfg.context!r}")
    if cfg.vessels not in VESSEL_COURSES:
        raise ValueError(f"vessels must be one of {VESSEL_COURSES}, got {cfg.vessels!r}")
    rng = np.random.default_rng([seed, index])
    grid = _draw_grid(rng, cfg)
    c = Canvas(grid, rng)
    phase = float(rng.uniform(0.7, 1.3))  # contrast timing / dose: scales every enhancement
    fat_hu, muscle_hu = float(rng.uniform(-115, -85)), float(rng.uniform(40, 60))
    half_x = min(float(rng.uniform(135, 175)), 0.5 * grid.spacing[0] * grid.shape[0] * 0.97)
    half_y = float(rng.uniform(100, 130))
    fat_layer = _paint_body(c, half_x, half_y, fat_hu, muscle_hu)
    y_spine, y_front = _paint_spine(c, half_y, muscle_hu)
    aorta_hu = 120.0 + 130.0 * phase
    if cfg.vessels == "straight":
        paint_straight_vessels(c, y_front, aorta_hu, LABEL_VALUE["aorta"], LABEL_VALUE["inferior vena cava"])
    jitter = lambda s: rng.normal(0.0, s, 3)  # noqa: E731 - tiny local helper

    liver_hu = 60.0 + 50.0 * phase
    liver = Blob.random(
        rng,
        np.array([0.42 * half_x, 0.05 * half_y, 75.0]) + jitter(6),
        np.array([0.45 * half_x, 0.7 * half_y, rng.uniform(60, 80)]),
        angle=rng.uniform(-0.3, 0.3),
    )
    spleen = Blob.random(
        rng,
        np.array([-0.55 * half_x, y_spine + 40.0, 70.0]) + jitter(5),
        np.array([rng.uniform(22, 32), rng.uniform(40, 55), rng.uniform(40, 55)]),
        angle=rng.uniform(0.4, 0.9),
    )
    kidneys = {}
    for name, side, dz in (("left kidney", -1, 10.0), ("right kidney", 1, -5.0)):
        kidneys[name] = Blob.random(
            rng,
            np.array([side * rng.uniform(55, 70), y_spine + 8.0, dz + rng.uniform(-8, 8)]),
            np.array([rng.uniform(22, 28), rng.uniform(25, 32), rng.uniform(45, 60)]),
            angle=side * rng.uniform(0.2, 0.5),
        )
    y_panc = y_spine + rng.uniform(50, 62)
    pancreas = Tube.through(
        np.array(
            [
                [38.0, y_panc - 5, 12.0],
                [5.0, y_panc + 5, 20.0],
                [-45.0, y_panc, 28.0],
                [-0.55 * half_x + 20, y_spine + 50, 35.0],
            ]
        )
        + rng.normal(0, 3, (4, 3)),
        [rng.uniform(13, 17), rng.uniform(9, 12), rng.uniform(8, 11), rng.uniform(6, 9)],
    )
    z_colon = rng.uniform(-60, -30)
    colon = Tube.through(
        np.array(
            [
                [0.55 * half_x, -10.0, z_colon - 30],
                [0.35 * half_x, 0.45 * half_y, z_colon],
                [-0.25 * half_x, 0.5 * half_y, z_colon + 8],
                [-0.55 * half_x, 0.0, z_colon - 20],
            ]
        )
        + rng.normal(0, 4, (4, 3)),
        [rng.uniform(18, 24)] * 4,
    )

    if cfg.anatomy != "default":  # its own stream: the default series stays what it was
        blobs, tubes = vary_layout(
            {"liver": liver, "spleen": spleen, **kidneys},
            {"liver": 1, "spleen": -1, "left kidney": -1, "right kidney": 1},
            {"pancreas": pancreas, "colon": colon},
            np.random.default_rng([seed, index, 3]),
            body=(half_x, half_y) if cfg.anatomy == "real" else None,
        )
        liver, spleen, pancreas, colon = blobs["liver"], blobs["spleen"], tubes["pancreas"], tubes["colon"]
        kidneys = {name: blobs[name] for name in kidneys}
    context = np.random.default_rng([seed, index, 4]) if cfg.context != "plain" else None  # its own stream
    body = Body(half_x, half_y, fat_layer, y_spine)
    if context is not None:  # soft tissue into the fat before the organs, which cover it where they meet
        packed = cfg.context == "packed"
        paint_psoas(c, body, context, muscle_hu)
        paint_small_bowel(c, body, context, phase)
        paint_stomach(
            c, body, context, phase, float(liver.center[2]), LABEL_VALUE["stomach"], spleen if packed else None
        )
        paint_table(c, body, context)
        if packed:
            pack_cavity(c, body, context)
    _organ(c, liver, "liver", liver_hu, texture=6.0)
    if context is not None:
        _organ(c, left_lobe(body, liver, context), "liver", liver_hu, texture=6.0, rng=context)
        carve_gallbladder(c, liver, LABEL_VALUE["liver"], LABEL_VALUE["gallbladder"], context)
    _organ(c, spleen, "spleen", 70.0 + 55.0 * phase)
    kidney_boxes = {}
    for name, blob in kidneys.items():
        box, m = blob.mask(grid)
        if box is None:
            continue
        medulla = blob.level(grid, box) < 0.62
        hu = np.where(medulla, 90.0 + 60.0 * phase, 120.0 + 90.0 * phase).astype(np.float32)
        c.paint(box, m, hu, LABEL_VALUE[name])
        kidney_boxes[name] = (box, m)
    box, m, _ = pancreas.mask(grid)
    c.paint(box, m, c.texture(box, m.shape, 55.0 + 50.0 * phase, 10.0) if box else 0.0, LABEL_VALUE["pancreas"])
    box, m, rel = colon.mask(grid)
    if box is not None:
        gas = rng.random() < 0.6
        lumen_hu = np.float32(-900.0 if gas else rng.uniform(0, 25))
        c.paint(box, m, np.where(rel < 0.72, lumen_hu, 45.0 + 20.0 * phase).astype(np.float32), LABEL_VALUE["colon"])
    if cfg.vessels == "course":  # its own stream, over the organs, before the bones and the lesions
        paint_vessel_course(
            c,
            np.random.default_rng([seed, index, 5]),
            y_spine,
            y_front,
            float(liver.center[2] - 0.6 * liver.radii[2]),
            aorta_hu,
            LABEL_VALUE["aorta"],
            LABEL_VALUE["inferior vena cava"],
        )

    if context is not None:  # bones after the organs, never over them
        paint_ribs(c, body, context)
        paint_pelvis(c, body, context)

    # Tumours: type (index % 4) is always present so any 4 consecutive cases contain every tumour label.
    tumours: dict[str, int] = {}
    for k, host in enumerate(TUMOUR_HOSTS):
        forced = cfg.force_one_tumour and k == index % 4
        if not forced and rng.random() >= cfg.tumour_probability:
            continue
        if host == "liver":
            count = int(rng.integers(1, 4))
            for _ in range(count):
                lb, lm = _lesion_blob(rng, _point_inside(rng, liver), 7, 22).mask(grid)
                if lb is not None:
                    c.paint(
                        lb,
                        lm,
                        c.texture(lb, lm.shape, liver_hu - rng.uniform(35, 60), 6.0),
                        LABEL_VALUE["liver tumor"],
                        within=c.label[lb] == LABEL_VALUE["liver"],
                    )
            tumours[host] = count
        elif host == "kidney":
            side = "left kidney" if rng.random() < 0.5 else "right kidney"
            kb = kidneys[side]
            lb, lm = _lesion_blob(rng, _point_inside(rng, kb, 0.7), 10, 24).mask(grid)
            if lb is not None:
                host_or_fat = (c.label[lb] == LABEL_VALUE[side]) | (c.hu[lb] < -20)
                c.paint(
                    lb,
                    lm,
                    c.texture(lb, lm.shape, 45.0 + 35.0 * phase, 15.0),
                    LABEL_VALUE["kidney tumor"],
                    within=host_or_fat,
                )
            tumours[host] = 1
        elif host == "pancreas":
            centre = pancreas.points[int(rng.integers(0, len(pancreas.points) * 2 // 3))]
            lb, lm = _lesion_blob(rng, centre, 9, 16).mask(grid)
            if lb is not None:
                c.paint(
                    lb,
                    lm,
                    c.texture(lb, lm.shape, 35.0 + 15.0 * phase, 6.0),
                    LABEL_VALUE["pancreas tumor"],
                    within=c.label[lb] == LABEL_VALUE["pancreas"],
                )
            tumours[host] = 1
        else:
            centre = colon.points[int(rng.integers(len(colon.points) // 5, len(colon.points) * 4 // 5))]
            lb, lm = _lesion_blob(rng, centre, 14, 22).mask(grid)
            if lb is not None:
                c.paint(
                    lb,
                    lm,
                    c.texture(lb, lm.shape, 50.0 + 20.0 * phase, 8.0),
                    LABEL_VALUE["colon tumor"],
                    within=c.label[lb] == LABEL_VALUE["colon"],
                )
            tumours[host] = 1
    # Drop tumour types whose lesions fell off the grid so the description matches the label map.
    tumours = {h: n for h, n in tumours.items() if (c.label == LABEL_VALUE[f"{h} tumor"]).any()}

    # Scanner: partial-volume blur (about one voxel), then quantum noise.
    sigma_vox = [0.7 / s * min(grid.spacing) for s in grid.spacing]
    wide = None
    if cfg.randomise == "wide":  # its own stream: the default series stays what it was
        wide = _widen(c.hu, c.label, np.random.default_rng([seed, index, 1]))
        sigma_vox = [wide[0] * v for v in sigma_vox[:2]] + [wide[0] * sigma_vox[2] + wide[2]]
    hu = gaussian_filter(c.hu, sigma=sigma_vox)
    hu += rng.normal(0.0, rng.uniform(6.0, 20.0), size=hu.shape).astype(np.float32)
    if wide is not None:
        noise_rng = np.random.default_rng([seed, index, 2])
        hu += noise_rng.normal(0.0, wide[1], size=hu.shape).astype(np.float32)
    image = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    return PhantomCase(
        image=image, label=c.label, affine=grid.affine, description=_describe(grid, phase, tumours), tumours=tumours
    )


def _describe(grid: VoxelGrid, phase: float, tumours: dict[str, int]) -> str:
    timing = "arterial-late" if phase > 1.15 else "portal venous" if phase > 0.85 else "delayed"
    parts = [
        f"Synthetic contrast-enhanced abdominal CT ({timing} phase), "
        f"{grid.spacing[0]:.2f} x {grid.spacing[1]:.2f} x {grid.spacing[2]:.2f} mm."
    ]
    for host in TUMOUR_HOSTS:
        n = tumours.get(host, 0)
        parts.append(
            f"{host.capitalize()}: {n} tumour{'s' if n > 1 else ''}." if n else f"{host.capitalize()}: no tumour."
        )
    return " ".join(parts)


def case_id(index: int) -> str:
    """File stem of case ``index`` (``phantom_000``)."""
    return f"phantom_{index:03d}"


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        dst.write_bytes(src.read_bytes())


def write_dataset(out: str | Path, n: int, seed: int, cfg: PhantomConfig | None = None) -> list[dict]:
    """Write ``n`` cases as an MSD task folder plus the MONAI Label flat layout; returns per-case statistics rows."""
    out = Path(out)
    for sub in ("imagesTr", "labelsTr", "labels/final"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    training, stats = [], []
    for i in range(n):
        case = generate_case(seed, i, cfg)
        name = f"{case_id(i)}.nii.gz"
        img_path, lbl_path = out / "imagesTr" / name, out / "labelsTr" / name
        nib.save(nib.Nifti1Image(case.image, case.affine), img_path)
        nib.save(nib.Nifti1Image(case.label, case.affine), lbl_path)
        _link_or_copy(img_path, out / name)
        _link_or_copy(lbl_path, out / "labels" / "final" / name)
        training.append(
            {
                "image": f"./imagesTr/{name}",
                "label": f"./labelsTr/{name}",
                "description": case.description,
                "tumours": case.tumours,
                "shape": list(case.image.shape),
                "spacing": [round(float(s), 4) for s in np.abs(np.diag(case.affine)[:3])],
            }
        )
        stats.extend(case_statistics(case_id(i), case))
    meta = {
        "name": "TextDiffSegPhantom",
        "description": "Synthetic abdominal CT phantoms (textdiffseg.data.phantom)",
        "reference": "generated",
        "licence": "CC0",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": {"0": "background", **{str(v): k for v, k in PHANTOM_LABEL_NAMES.items()}},
        "seed": seed,
        "numTraining": n,
        "numTest": 0,
        "training": training,
        "test": [],
    }
    (out / "dataset.json").write_text(json.dumps(meta, indent=2))
    return stats


def case_statistics(cid: str, case: PhantomCase) -> list[dict]:
    """Voxel count and mean HU of every label value in a case (for the printed check table)."""
    rows = []
    for value, name in PHANTOM_LABEL_NAMES.items():
        sel = case.label == value
        count = int(sel.sum())
        rows.append(
            {
                "case": cid,
                "label": name,
                "voxels": count,
                "mean_hu": float(case.image[sel].mean()) if count else float("nan"),
            }
        )
    return rows


def format_table(rows: list[dict]) -> str:
    """Markdown table of the statistics rows."""
    lines = ["| case | label | voxels | mean HU |", "|---|---|---:|---:|"]
    for r in rows:
        hu = "-" if r["voxels"] == 0 else f"{r['mean_hu']:.1f}"
        lines.append(f"| {r['case']} | {r['label']} | {r['voxels']} | {hu} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(prog="python -m textdiffseg.data.phantom", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--n", type=int, default=8, help="number of cases (default 8)")
    p.add_argument("--seed", type=int, default=0, help="series seed (default 0)")
    p.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        metavar=("SX", "SY", "SZ"),
        help="fix the voxel size in mm (e.g. 3 3 3 for small training volumes) instead of drawing it",
    )
    p.add_argument(
        "--randomise",
        choices=("default", "wide"),
        default="default",
        help="wide: + contrast phase (non-contrast/arterial/venous/delayed), per-structure HU shifts, stronger "
        "noise and blur, thicker slices (the default series is unchanged)",
    )
    p.add_argument(
        "--anatomy",
        choices=ANATOMIES,
        default="default",
        help="wide: every organ moved, resized and turned far more than the default series' jitter, keeping its "
        "side (combines with --randomise); real: the same around the spleen, pancreas and kidney positions of a real "
        "abdomen",
    )
    p.add_argument(
        "--context",
        choices=CONTEXTS,
        default="plain",
        help="rich: + ribs, pelvis, psoas, stomach, small bowel loops, CT table, the liver's left lobe and a "
        "gallbladder around the organs; packed: rich with the stomach against the spleen and most fat inside the "
        "muscle wall turned into soft tissue (the plain series is unchanged)",
    )
    p.add_argument(
        "--vessels",
        choices=VESSEL_COURSES,
        default="straight",
        help="course: the aorta lies on the spine, wanders and divides into the iliac arteries at L4, the IVC rises "
        "from the iliac veins into the back of the liver, both over the organs (the straight series is unchanged)",
    )
    p.add_argument("--quiet", action="store_true", help="do not print the per-label table")
    args = p.parse_args(argv)
    if args.n < 1:
        p.error("--n must be at least 1")
    if args.spacing and min(args.spacing) <= 0:
        p.error("--spacing must be positive")
    cfg = PhantomConfig(
        spacing=tuple(args.spacing) if args.spacing else None,
        randomise=args.randomise,
        anatomy=args.anatomy,
        context=args.context,
        vessels=args.vessels,
    )
    stats = write_dataset(args.out, args.n, args.seed, cfg)
    if not args.quiet:
        print(format_table(stats))
    print(f"wrote {args.n} cases to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
