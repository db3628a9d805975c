"""The pieces a checkpoint paints for each lesion prompt, with what tells a true lesion from a false one.

``python scripts/lesion_pieces.py --data runs/gen/eval_phantom --ckpt CKPT --out pieces.json`` prompts every
structure each case annotates (as ``textdiffseg.evaluate`` does, so the lesion rules see the same organ masks) and,
for every lesion prompt (``textdiffseg.postprocess.LESION_ORGAN``), writes one row per face-connected piece of its mask
at the model spacing, after the served post-processing (probability > 0.5): the piece's volume (ml), peak and mean
probability, the share of it inside the true lesion (the label resampled to the model grid, nearest), and whether
the case has that lesion at all. A rule that drops lesion pieces the model is unsure of would be tuned on these
rows (README, "Masks are cleaned by anatomy": neither the peak nor the mean separates true from false pieces).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from monai.transforms import EnsureChannelFirst, LoadImage, Orientation, Spacing
from scipy import ndimage

from textdiffseg import inference
from textdiffseg.checkpoint import load_for_inference
from textdiffseg.data.folders import load_folder
from textdiffseg.inference import Segmenter
from textdiffseg.postprocess import LESION_ORGAN


def piece_rows(segmenter: Segmenter, data: Path) -> list[dict]:
    """One row per painted piece of every lesion prompt, and one row (``piece`` -1) per lesion prompt left empty."""
    loader, channel_first = LoadImage(image_only=True), EnsureChannelFirst()
    to_model_grid = Spacing(pixdim=segmenter.spacing, mode="nearest")
    voxel_ml = float(np.prod(segmenter.spacing)) / 1000.0
    cleaned: list[np.ndarray] = []
    clean = inference.clean_probabilities

    def recording(probability, structures, organs=None, ceiling=None):  # noqa: ANN001, ANN202
        notes = clean(probability, structures, organs, ceiling)
        cleaned.append(probability.detach().cpu().numpy().copy())
        return notes

    rows: list[dict] = []
    for case in load_folder(data):
        image = channel_first(loader(str(case.image)))
        label = to_model_grid(Orientation(axcodes="RAS")(channel_first(loader(str(case.label)))))
        label = np.asarray(label[0]).round().astype(np.int32)
        names = sorted(case.targets)
        cleaned.clear()
        inference.clean_probabilities = recording
        try:
            segmenter.predict(image, names)
        finally:
            inference.clean_probabilities = clean
        maps = cleaned[0]
        if maps.shape[1:] != label.shape:
            raise SystemExit(f"error: {case.case_id}: model grid {maps.shape[1:]} but label {label.shape}")
        for i, name in enumerate(names):
            if name not in LESION_ORGAN:
                continue
            truth = np.isin(label, case.targets[name])
            probability = maps[i]
            pieces, count = ndimage.label(probability > 0.5)
            base = {"case": case.case_id, "prompt": name, "present": bool(truth.any())}
            base["truth_ml"] = round(float(truth.sum()) * voxel_ml, 2)
            if not count:
                rows.append({**base, "piece": -1})
            for k in range(1, count + 1):
                piece = pieces == k
                values = probability[piece]
                rows.append(
                    {
                        **base,
                        "piece": k,
                        "ml": round(float(piece.sum()) * voxel_ml, 2),
                        "peak": round(float(values.max()), 4),
                        "mean": round(float(values.mean()), 4),
                        "in_truth": round(float(truth[piece].mean()), 3),
                    }
                )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--ckpt", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    model, encoder = load_for_inference(a.ckpt)
    rows = piece_rows(Segmenter(model, encoder), a.data)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(rows, indent=1))
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
