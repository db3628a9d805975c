"""PNG overlay of liver, spleen and kidneys on the real abdomen (ts_abdomen of ``make realct``) for a checkpoint.

``python scripts/realct_overlay.py CKPT TITLE OUT.png [NAME,NAME,...]``: axial and coronal slices through each
structure's centroid (default liver, spleen and kidneys; other names are looked up in ``dataset.json``); truth
(TotalSegmentator's model output) green, the served pipeline's prediction red.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from monai.transforms import EnsureChannelFirst, LoadImage  # noqa: E402

from textdiffseg.checkpoint import load_for_inference  # noqa: E402
from textdiffseg.inference import Segmenter  # noqa: E402
from textdiffseg.model_scores import dice  # noqa: E402

ORGANS = {"liver": [5], "spleen": [1], "left kidney": [3], "right kidney": [2]}  # TotalSegmentator ids


def structure_ids(names: str, root: str) -> dict[str, list[int]]:
    """Label values of comma-separated structure names, from the folder's ``dataset.json``."""
    table = json.loads(Path(root, "dataset.json").read_text())["labels"]
    ids = {name: [int(v)] for v, name in table.items()}
    unknown = [n for n in names.split(",") if n not in ids]
    if unknown:
        raise SystemExit(f"error: {unknown} not labelled in {root}")
    return {n: ids[n] for n in names.split(",")}


def main(ckpt: str, title: str, out: str, names: str = "", root: str = "datasets/realct") -> None:
    organs = structure_ids(names, root) if names else ORGANS
    image = EnsureChannelFirst()(LoadImage(image_only=True)(f"{root}/imagesTr/ts_abdomen.nii.gz"))
    label = np.asarray(LoadImage(image_only=True)(f"{root}/labelsTr/ts_abdomen.nii.gz")).round().astype(int)
    model, encoder = load_for_inference(ckpt)
    with torch.inference_mode():
        pred = Segmenter(model, encoder).predict(image, list(organs))
    ct = np.clip((np.asarray(image[0]) + 200) / 500, 0, 1)
    fig, axes = plt.subplots(2, len(organs), figsize=(4 * len(organs), 8))
    for j, (name, values) in enumerate(organs.items()):
        truth = np.isin(label, values)
        mask = pred.probability[j] > 0.5
        score = dice(mask, truth)
        _, cy, cz = (int(v) for v in np.argwhere(truth).mean(0))
        for i, (cut, view) in enumerate([((slice(None), slice(None), cz), f"axial z={cz}"),
                                         ((slice(None), cy, slice(None)), f"coronal y={cy}")]):
            ax = axes[i, j]
            ax.imshow(ct[cut].T, cmap="gray", origin="lower")
            ax.contour(truth[cut].T.astype(float), levels=[0.5], colors="lime", linewidths=1)
            if mask[cut].any():
                ax.contour(mask[cut].T.astype(float), levels=[0.5], colors="red", linewidths=1)
            ax.set_title(f"{name} ({view}) Dice {score:.2f}", fontsize=9)
            ax.axis("off")
    fig.suptitle(f"{title}: ts_abdomen, truth (TotalSegmentator output) green, prediction red")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    print("wrote", out)


if __name__ == "__main__":
    main(*sys.argv[1:5])
