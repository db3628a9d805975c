"""An evaluation folder holding one patient of ``datasets/realct`` and the structures to score on it.

``python scripts/realct_eval_folder.py --realct datasets/realct --case ts_abdomen --out runs/gen/eval_abdomen``
writes ``OUT/dataset.json`` pointing at the case's files (absolute paths, nothing copied) with the case's own
targets restricted to ``--structure`` (default: the abdominal organs, aorta, IVC and L3), for
``python -m textdiffseg.evaluate --data OUT``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_STRUCTURES = (
    "liver", "spleen", "left kidney", "right kidney", "kidney", "pancreas", "gallbladder", "stomach", "colon",
    "urinary bladder", "aorta", "inferior vena cava", "L3 vertebra",
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--realct", type=Path, default=Path("datasets/realct"))
    p.add_argument("--case", required=True, help="case_id in the realct dataset.json")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--structure", action="append", help="structure to score (repeatable; default: abdominal)")
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
    out = {"name": f"realct_{a.case}", "labels": meta["labels"], "training": [row]}
    (a.out / "dataset.json").write_text(json.dumps(out, indent=1))
    print(f"{a.out}: {a.case}, {len(targets)} structures: {', '.join(sorted(targets))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
