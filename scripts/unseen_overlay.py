"""PNG of what checkpoints paint on a real CT whose organs nobody labelled (so no model trained on those organs).

``python scripts/unseen_overlay.py OUT.png IMAGE NAME=CKPT [NAME=CKPT ...]``: one row per checkpoint (``NAME=CKPT=raw``:
without the served pipeline's post-processing, ``textdiffseg.postprocess``), one column per
organ (liver, spleen, left and right kidney); each panel is the axial slice through the centre of that mask (of the
middle slice when it is empty), the mask in red. There is no truth to score against: this is the look a radiologist
would take. Used on ``slicer_chest`` of ``make realct`` (chest and upper abdomen; its label holds only lungs, ribs and
spine).
"""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from textdiffseg.checkpoint import load_for_inference  # noqa: E402
from textdiffseg.data.volumes import load_ras  # noqa: E402
from textdiffseg.inference import Segmenter  # noqa: E402

ORGANS = ("liver", "spleen", "left kidney", "right kidney")


def main(out: str, image_path: str, models: list[str]) -> None:
    image = load_ras(image_path)
    ct = np.clip((np.asarray(image[0]) + 200) / 500, 0, 1)
    rows = []
    for item in models:
        name, ckpt, *raw = item.split("=")
        model, encoder = load_for_inference(ckpt)
        with torch.inference_mode():
            pred = Segmenter(model, encoder, postprocess=raw != ["raw"]).predict(image, list(ORGANS))
        rows.append((name, np.asarray(pred.probability) > 0.5))
        for organ, mask in zip(ORGANS, rows[-1][1]):
            z = np.flatnonzero(mask.any((0, 1)))
            where = f"slices {z.min()}-{z.max()} of {mask.shape[2]}" if z.size else "empty"
            print(f"{name}: {organ} {int(mask.sum())} voxels, {where}")
    fig, axes = plt.subplots(len(rows), len(ORGANS), figsize=(3.2 * len(ORGANS), 3.7 * len(rows)), squeeze=False)
    for i, (name, masks) in enumerate(rows):
        for j, organ in enumerate(ORGANS):
            ax = axes[i, j]
            z = int(np.argwhere(masks[j]).mean(0)[2]) if masks[j].any() else ct.shape[2] // 2
            ax.imshow(ct[:, :, z].T, cmap="gray", origin="lower")
            if masks[j][:, :, z].any():
                ax.contour(masks[j][:, :, z].T.astype(float), levels=[0.5], colors="red", linewidths=1)
            ax.set_title(f"{name}: {organ} z={z} ({int(masks[j].sum())} vox)", fontsize=8)
            ax.axis("off")
    case_file = image_path.split("/")[-1]
    fig.suptitle(f"{case_file} axial (RAS voxel order: image right = patient right, anterior up), prediction red")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    print("wrote", out)


if __name__ == "__main__":
    if len(sys.argv) < 4:
        raise SystemExit("usage: python scripts/unseen_overlay.py OUT.png IMAGE NAME=CKPT[=raw] [NAME=CKPT[=raw] ...]")
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
