"""PNG of the served pipeline's masks against the truth on one case of a labelled folder.

``python scripts/folder_overlay.py CKPT FOLDER CASE_INDEX "liver,spleen,..." OUT.png``: one panel per prompt, the
axial slice through the centre of its truth; truth green, prediction red (RAS voxel order: image right = patient
right). Used on ``benchmarks/independent_phantoms.py``'s folder (README "A phantom family the model never saw").
"""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from textdiffseg.checkpoint import load_for_inference  # noqa: E402
from textdiffseg.data.folders import load_folder  # noqa: E402
from textdiffseg.data.volumes import load_ras  # noqa: E402
from textdiffseg.inference import Segmenter  # noqa: E402


def main(ckpt: str, folder: str, index: int, prompts: list[str], out: str) -> None:
    """Segment ``prompts`` on case ``index`` of ``folder`` and write the panels to ``out``."""
    case = load_folder(folder)[index]
    image = load_ras(case.image)
    label = load_ras(case.label)
    label = np.asarray(label[0]).round().astype(np.int32)
    model, encoder = load_for_inference(ckpt)
    with torch.inference_mode():
        prediction = Segmenter(model, encoder).predict(image, prompts)
    ct = np.clip((np.asarray(image[0]) + 200) / 500, 0, 1)
    fig, axes = plt.subplots(1, len(prompts), figsize=(3.6 * len(prompts), 4.0), squeeze=False)
    for ax, name, probability in zip(axes[0], prompts, prediction.probability):
        truth, mask = np.isin(label, case.targets[name]), probability > 0.5
        z = int(np.argwhere(truth).mean(0)[2]) if truth.any() else ct.shape[2] // 2
        ax.imshow(ct[:, :, z].T, cmap="gray", origin="lower")
        for region, colour in ((truth, "lime"), (mask, "red")):
            if region[:, :, z].any():
                ax.contour(region[:, :, z].T.astype(float), levels=[0.5], colors=colour, linewidths=1)
        ax.set_title(f"{name} z={z}: truth {int(truth.sum())}, mask {int(mask.sum())} vox", fontsize=8)
        ax.axis("off")
    fig.suptitle(f"{case.case_id}: truth green, prediction red (image right = patient right)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=70)
    print("wrote", out)


if __name__ == "__main__":
    if len(sys.argv) != 6:
        raise SystemExit('usage: python scripts/folder_overlay.py CKPT FOLDER CASE_INDEX "a,b,..." OUT.png')
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split(","), sys.argv[5])
