"""Where a prompted structure's raw mask lies along the scan, against the truth, for one or more checkpoints.

``python scripts/prompt_extent.py FOLDER CASE STRUCTURE[,STRUCTURE...] NAME=CKPT [NAME=CKPT ...]``: for each
checkpoint and structure, the Dice of the raw mask (no post-processing, so stray parts count), its precision and
recall, the slices it covers against the truth's, and how many of its voxels lie below the truth's lowest slice.
FOLDER is any folder ``textdiffseg.data.folders.load_folder`` reads (the independent phantom family, the phantom
series); a structure is scored on the label values the evaluator gives it. Used on the independent family's aorta
(README "Vessels that run like a patient's"): a model that paints an aorta below where the aorta divides has learned
"bright tube in front of the spine", not the aorta.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from textdiffseg.checkpoint import load_for_inference
from textdiffseg.data.folders import load_folder
from textdiffseg.data.volumes import load_ras
from textdiffseg.inference import Segmenter


def _slices(mask: np.ndarray) -> tuple[int, int] | None:
    z = np.flatnonzero(mask.any((0, 1)))
    return (int(z.min()), int(z.max())) if z.size else None


def extent(folder: str, case: str, structures: list[str], ckpt: str) -> list[dict]:
    """One row per structure: Dice, precision and recall of the raw mask, the slices (first, last) of mask and truth,
    the number of slices, and the mask's voxels below the truth's lowest slice."""
    found = [c for c in load_folder(folder) if c.case_id == case]
    if not found:
        raise SystemExit(f"error: no case {case!r} in {folder}")
    targets = found[0].targets  # the values each structure covers, as the evaluator scores it
    missing = [s for s in structures if s not in targets]
    if missing:
        raise SystemExit(f"error: {folder} labels no {', '.join(missing)}")
    image = load_ras(str(found[0].image))
    truth = np.asarray(load_ras(str(found[0].label))[0])
    model, encoder = load_for_inference(ckpt)
    with torch.inference_mode():
        pred = Segmenter(model, encoder, postprocess=False).predict(image, structures)
    rows = []
    for k, structure in enumerate(structures):
        mask, true = np.asarray(pred.probability[k]) > 0.5, np.isin(truth, targets[structure])
        hit, true_slices = int((mask & true).sum()), _slices(true)
        rows.append(
            {
                "structure": structure,
                "dice": 2 * hit / max(int(mask.sum() + true.sum()), 1),
                "precision": hit / max(int(mask.sum()), 1),
                "recall": hit / max(int(true.sum()), 1),
                "mask_slices": _slices(mask),
                "truth_slices": true_slices,
                "slices": int(true.shape[2]),
                "voxels": int(mask.sum()),
                "below": int(mask[:, :, : true_slices[0]].sum()) if true_slices else 0,
            }
        )
    return rows


def main(folder: str, case: str, structures: list[str], models: list[str]) -> None:
    """Print the rows of every ``NAME=CKPT`` as one Markdown table."""
    span = lambda s: f"{s[0]}-{s[1]}" if s else "none"  # noqa: E731 - tiny local formatter
    print("| checkpoint | structure | Dice | precision | recall | mask slices | truth slices | voxels below truth |")
    print("|---|---|---:|---:|---:|---|---|---:|")
    for item in models:
        name, ckpt = item.split("=", 1)
        for r in extent(folder, case, structures, ckpt):
            print(
                f"| {name} | {r['structure']} | {r['dice']:.3f} | {r['precision']:.2f} | {r['recall']:.2f} "
                f"| {span(r['mask_slices'])} | {span(r['truth_slices'])} of {r['slices']} "
                f"| {r['below']} of {r['voxels']} |"
            )


if __name__ == "__main__":
    if len(sys.argv) < 5:
        raise SystemExit(__doc__.split("\n\n")[1])
    main(sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4:])
