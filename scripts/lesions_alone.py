"""Each tumour prompted alone on labelled CTs, without and with post-processing: what a user typing one lesion gets.

``python scripts/lesions_alone.py CKPT FOLDER [FOLDER ...]`` (MSD-style folders, e.g. ``runs/gen/eval_abdomen``).
Per case and lesion prompt it prints the truth's volume (0 where the case has none), the raw answer's volume, the
part of it outside the organ's label (``-`` where the case does not label the organ), the cleaned answer's volume,
its passes and what the clean-up removed (``textdiffseg.postprocess``: the organ is segmented for the lesion).
"""

from __future__ import annotations

import argparse

import numpy as np
from monai.data.utils import affine_to_spacing
from monai.transforms import EnsureChannelFirst, LoadImage
from scipy import ndimage

from textdiffseg.checkpoint import load_for_inference
from textdiffseg.data.folders import load_folder
from textdiffseg.inference import Segmenter
from textdiffseg.postprocess import LESION_ORGAN

LESIONS = ("liver tumor", "kidney tumor", "pancreas tumor", "colon tumor")
ORGAN_DILATION = 2  # voxels of the input grid: a lesion on the organ's edge counts as inside


def organ_label(label: np.ndarray, targets: dict[str, tuple[int, ...]], lesion: str) -> np.ndarray | None:
    """The lesion's organ in a case's label (dilated), ``None`` when the case labels none of its organs."""
    values = [v for organ in LESION_ORGAN[lesion] if organ in targets for v in targets[organ]]
    if not values:
        return None
    return ndimage.binary_dilation(np.isin(label, values), iterations=ORGAN_DILATION)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("ckpt")
    p.add_argument("folders", nargs="+")
    a = p.parse_args(argv)
    model, encoder = load_for_inference(a.ckpt, None, "cpu")
    raw = Segmenter(model, encoder, postprocess=False, fine_pass=False)
    cleaned = Segmenter(model, encoder, fine_pass=False)
    loader, channel_first = LoadImage(image_only=True), EnsureChannelFirst()
    print("| case | prompt | truth (ml) | raw (ml) | raw outside organ (ml) | cleaned (ml) | passes | removed |")
    print("|---|---|---:|---:|---:|---:|---|---|")
    for folder in a.folders:
        for case in load_folder(folder):
            image = channel_first(loader(str(case.image)))
            label = np.asarray(loader(str(case.label))).round().astype(np.int32)
            ml = float(np.prod(affine_to_spacing(np.asarray(image.affine, np.float64)))) / 1000.0
            for lesion in LESIONS:
                truth = np.isin(label, case.targets[lesion]).sum() if lesion in case.targets else 0
                before = raw.predict(image, [lesion]).probability[0] > 0.5
                after = cleaned.predict(image, [lesion])
                organ = organ_label(label, case.targets, lesion)
                outside = "-" if organ is None else f"{(before & ~organ).sum() * ml:.1f}"
                print(
                    f"| {case.case_id} | {lesion} | {truth * ml:.1f} | {before.sum() * ml:.1f} | {outside} | "
                    f"{(after.probability[0] > 0.5).sum() * ml:.1f} | {'+'.join(after.passes[0])} | "
                    f"{'; '.join(after.postprocessing) or '-'} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
