"""PNG of one structure's neighbourhood in several labelled folders: axial, coronal and sagittal slices through its
centre, 200 mm across at 2.5 mm (RAS, image right = patient right), the structure outlined yellow and the liver green.

``python scripts/structure_views.py OUT.png spleen runs/indep_phantoms:0 runs/gen/eval_abdomen:0 ...`` (one row per
``FOLDER:CASE_INDEX``). Used to compare how a structure looks where the model finds it and where it does not (README
"Phantoms with a patient's surroundings").
"""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from monai.transforms import Spacing  # noqa: E402

from textdiffseg.data.folders import DatasetFolderError, case_at  # noqa: E402
from textdiffseg.data.volumes import load_ras  # noqa: E402

SPACING_MM = 2.5
HALF_VOXELS = 40  # 100 mm either side of the centre


def _on_grid(path: str, mode: str) -> np.ndarray:
    volume = load_ras(path)
    return np.asarray(Spacing(pixdim=(SPACING_MM,) * 3, mode=mode)(volume)[0])


def main(out: str, structure: str, specs: list[str]) -> None:
    """One row per ``FOLDER:INDEX`` of ``specs``."""
    fig, axes = plt.subplots(len(specs), 3, figsize=(10, 3.4 * len(specs)), squeeze=False)
    for row, spec in zip(axes, specs):
        case = case_at(spec, structure)
        ct = np.clip((_on_grid(str(case.image), "bilinear") + 200) / 500, 0, 1)
        label = _on_grid(str(case.label), "nearest").round()
        target = np.isin(label, case.targets[structure])
        liver = np.isin(label, case.targets.get("liver", []))
        c = np.argwhere(target).mean(0).astype(int)
        lo, hi = np.maximum(c - HALF_VOXELS, 0), c + HALF_VOXELS
        cuts = {
            "axial": (slice(lo[0], hi[0]), slice(lo[1], hi[1]), c[2]),
            "coronal": (slice(lo[0], hi[0]), c[1], slice(lo[2], hi[2])),
            "sagittal": (c[0], slice(lo[1], hi[1]), slice(lo[2], hi[2])),
        }
        millilitres = target.sum() * SPACING_MM**3 / 1000
        for ax, (view, cut) in zip(row, cuts.items()):
            ax.imshow(ct[cut].T, cmap="gray", origin="lower")
            for mask, colour in ((target, "yellow"), (liver, "lime")):
                if mask[cut].any():
                    ax.contour(mask[cut].T.astype(float), levels=[0.5], colors=colour, linewidths=0.8)
            ax.set_title(f"{case.case_id} {view} ({structure} {millilitres:.0f} ml)", fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=60)
    print("wrote", out)


if __name__ == "__main__":
    if len(sys.argv) < 4:
        raise SystemExit("usage: python scripts/structure_views.py OUT.png STRUCTURE FOLDER:INDEX [FOLDER:INDEX ...]")
    try:
        main(sys.argv[1], sys.argv[2], sys.argv[3:])
    except DatasetFolderError as err:
        raise SystemExit(str(err)) from None
