"""PNG of one phantom drawn plain and with ``--context rich`` (same seed, same organs), beside each other.

``python scripts/phantom_context_figure.py OUT.png [--seed 400] [--index 2]``: rows plain / rich; columns the axial
slices through the spleen's and the left kidney's centres and a coronal slice through the spine; liver (green) and
spleen (yellow) outlined. Anatomy ``real`` and randomise ``wide``, as ``make context-continue`` trains on.
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from textdiffseg.data.phantom import LABEL_VALUE, PhantomConfig, generate_case  # noqa: E402

OUTLINES = {"liver": "lime", "spleen": "yellow"}


def _centre_slice(label: np.ndarray, name: str) -> int:
    return int(np.argwhere(label == LABEL_VALUE[name])[:, 2].mean())


def main(argv: list[str] | None = None) -> None:
    """Draw the figure."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=400)
    p.add_argument("--index", type=int, default=2)
    args = p.parse_args(argv)
    fig, axes = plt.subplots(2, 3, figsize=(12, 8))
    for row, context in enumerate(("plain", "rich")):
        cfg = PhantomConfig(spacing=(2.5, 2.5, 2.5), randomise="wide", anatomy="real", context=context)
        case = generate_case(args.seed, args.index, cfg)
        # voxel index grows towards the patient's left and back: flip y, front up (the right stays on the left)
        ct = np.clip((case.image[:, ::-1].astype(np.float32) + 200) / 500, 0, 1)
        label = case.label[:, ::-1]
        cuts = {
            "axial, spleen": (slice(None), slice(None), _centre_slice(label, "spleen")),
            "axial, left kidney": (slice(None), slice(None), _centre_slice(label, "left kidney")),
            "coronal": (slice(None), ct.shape[1] // 2 - 12, slice(None)),
        }
        for ax, (title, cut) in zip(axes[row], cuts.items()):
            ax.imshow(ct[cut].T, cmap="gray", origin="lower")
            for name, colour in OUTLINES.items():
                mask = (label[cut] == LABEL_VALUE[name]).T
                if mask.any():
                    ax.contour(mask.astype(float), levels=[0.5], colors=colour, linewidths=0.8)
            ax.set_title(f"--context {context}: {title}", fontsize=9)
            ax.axis("off")
    fig.suptitle(
        f"phantom seed {args.seed} case {args.index} (liver green, spleen yellow; patient's right on the left)"
    )
    fig.tight_layout()
    fig.savefig(args.out, dpi=70)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
