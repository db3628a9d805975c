"""Where each organ sits in the body, per dataset folder: a check that a phantom family's anatomy resembles a patient's.

For every case of an MSD-style folder (``dataset.json`` with ``labels`` and ``training``), each labelled structure's
centroid is taken to world millimetres (the image's affine: RAS+, so +x is the patient's right, +y anterior, +z
superior) and expressed relative to the body's bounding box (the largest connected part above -300 HU, so not the
table): -1 and +1 are the body's two edges on that axis, 0 its centre. The table gives the mean and spread over the
cases and the mean volume::

    python scripts/organ_layout.py runs/indep_phantoms runs/gen/phantom_default --cases 6
    python scripts/organ_layout.py datasets/realct --only ts_abdomen

The superior-inferior figure depends on how much of the body the scan covers; right-left and anterior-posterior do
not. A folder that does not exist or has no ``dataset.json`` is a one-line error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from monai.transforms.utils import get_largest_connected_component_mask

BODY_HU = -300.0
AXES = ("right", "anterior", "superior")


def case_layout(image: Path, label: Path, names: dict[int, str]) -> dict[str, tuple[float, float, float, float]]:
    """``{structure: (right, anterior, superior, volume_ml)}`` of one case (positions relative to the body box)."""
    scan, labels = nib.load(str(image)), nib.load(str(label))
    hu = np.asarray(scan.dataobj, dtype=np.float32)
    values = np.asarray(labels.dataobj).round().astype(np.int32)
    affine = scan.affine
    # the body without the table, a blanket or the arms' separate parts (face-connected, as scipy's default)
    body = np.argwhere(get_largest_connected_component_mask(hu > BODY_HU, connectivity=1))
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    lo, hi = body.min(0), body.max(0)
    box = nib.affines.apply_affine(affine, lo + corners * (hi - lo))
    low, high = box.min(0), box.max(0)
    centre, half = (low + high) / 2, np.maximum((high - low) / 2, 1e-6)
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000.0
    layout = {}
    for value, name in names.items():
        voxels = np.argwhere(values == value)
        if len(voxels) == 0:
            continue
        world = nib.affines.apply_affine(affine, voxels.mean(0))
        relative = (world - centre) / half
        layout[name] = (float(relative[0]), float(relative[1]), float(relative[2]), len(voxels) * voxel_ml)
    return layout


def folder_layout(folder: Path, cases: int | None, only: str | None) -> dict[str, np.ndarray]:
    """``{structure: (n_cases, 4) array}`` over the folder's cases."""
    manifest = folder / "dataset.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"{folder}: no dataset.json")
    data = json.loads(manifest.read_text())
    names = {int(k): v for k, v in data["labels"].items() if int(k) != 0}
    entries = [e for e in data["training"] if only is None or only in e["image"]][:cases]
    rows: dict[str, list[tuple[float, float, float, float]]] = {}
    for entry in entries:
        layout = case_layout(folder / entry["image"], folder / entry["label"], names)
        for name, row in layout.items():
            rows.setdefault(name, []).append(row)
    return {name: np.array(values) for name, values in rows.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--cases", type=int, default=None, help="the first N cases of each folder")
    parser.add_argument("--only", default=None, help="only cases whose image path contains this")
    args = parser.parse_args(argv)
    if args.cases is not None and args.cases < 1:
        parser.error("--cases must be at least 1")
    for folder in args.folders:
        try:
            table = folder_layout(folder, args.cases, args.only)
        except (FileNotFoundError, KeyError, ValueError) as err:
            print(f"organ_layout: {err}", file=sys.stderr)
            return 2
        print(f"{folder}  (mean +- sd over cases; -1..+1 = body edge to edge)")
        for name, rows in sorted(table.items()):
            cells = "  ".join(f"{axis} {rows[:, i].mean():+.2f}+-{rows[:, i].std():.2f}" for i, axis in enumerate(AXES))
            print(f"  {name:22s} {cells}  {rows[:, 3].mean():6.0f} ml  ({len(rows)} cases)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
