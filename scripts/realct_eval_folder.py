"""An evaluation folder holding one patient of ``datasets/realct`` and the structures to score on it.

``python scripts/realct_eval_folder.py --realct datasets/realct --case ts_abdomen --out runs/gen/eval_abdomen``
writes ``OUT/dataset.json`` pointing at the case's files (absolute paths, nothing copied) with the case's own
targets restricted to ``--structure`` (default: the abdominal organs, aorta, IVC and L3), for
``python -m textdiffseg.evaluate --data OUT``. ``--top-mm 120`` instead writes a copy of the case cut to its top
120 mm (``OUT/image.nii.gz``, ``OUT/label.nii.gz``, RAS): the same patient as a scan that ends in the upper abdomen
(a chest CT, or ``example_ct_sm``), to see whether a model needs the whole abdomen in view.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np

DEFAULT_STRUCTURES = (
    "liver", "spleen", "left kidney", "right kidney", "kidney", "pancreas", "gallbladder", "stomach", "colon",
    "urinary bladder", "aorta", "inferior vena cava", "L3 vertebra",
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--realct", type=Path, default=Path("datasets/realct"))
    p.add_argument("--case", required=True, help="case_id in the realct dataset.json")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--structure", action="append", help="structure to score (repeatable; default: abdominal)")
    p.add_argument("--top-mm", type=float, help="write a copy cut to the top (superior) this many mm of the scan")
    a = p.parse_args(argv)
    meta = json.loads((a.realct / "dataset.json").read_text())
    entries = [e for e in meta["training"] + meta.get("test", []) if e.get("case_id") == a.case]
    if not entries:
        p.error(f"no case {a.case!r} in {a.realct / 'dataset.json'}")
    entry, keep = entries[0], set(a.structure or DEFAULT_STRUCTURES)
    targets = {name: values for name, values in entry["targets"].items() if name in keep}
    row = {
        "image": str((a.realct / entry["image"]).resolve()),
        "label": str((a.realct / entry["label"]).resolve()),
        "case_id": a.case,
        "targets": targets,
    }
    a.out.mkdir(parents=True, exist_ok=True)
    if a.top_mm:
        for key in ("image", "label"):
            row[key] = str(_top_slab(Path(row[key]), a.top_mm, (a.out / f"{key}.nii.gz").resolve()))
    out = {"name": f"realct_{a.case}", "labels": meta["labels"], "training": [row]}
    (a.out / "dataset.json").write_text(json.dumps(out, indent=1))
    print(f"{a.out}: {a.case}, {len(targets)} structures: {', '.join(sorted(targets))}")
    return 0


def _top_slab(path: Path, top_mm: float, out: Path) -> Path:
    """``path`` reoriented to RAS and cut to its top ``top_mm`` (the superior end), written to ``out``."""
    image = nib.as_closest_canonical(nib.load(path))
    data = np.asarray(image.dataobj)
    keep = max(1, int(round(top_mm / float(image.header.get_zooms()[2]))))
    start = max(0, data.shape[2] - keep)
    nib.save(image.slicer[:, :, start:], out)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
