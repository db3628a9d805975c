"""How far around a structure the model looks: paste a box around it from one labelled case into another.

``python scripts/swap_surroundings.py CKPT STRUCTURE FOLDER_A:INDEX FOLDER_B:INDEX [HALF_MM ...]`` resamples both
cases to 2.5 mm, and for each half-width (default 25, 50, 75 mm) pastes the cube of that half-width around A's
structure into B, centred on B's own structure, and the other way round. It prints the mean probability inside the
pasted structure, Dice and the voxels painted (one sample, no post-processing). When a structure is found with its
own 25 mm but lost once 75 mm of its own case come along, what decides is 25-75 mm away from it.

Used on the independent phantom family's spleen (README "Phantoms with a patient's surroundings"). Beside it,
``scripts/probe_structure.py`` changes one property of a case at a time.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Spacing

from textdiffseg.checkpoint import load_for_inference
from textdiffseg.data.folders import DatasetFolderError, case_at
from textdiffseg.data.volumes import load_ras
from textdiffseg.inference import Segmenter
from textdiffseg.model_scores import dice

SPACING_MM = 2.5
DEFAULT_HALF_MM = (25.0, 50.0, 75.0)


def _case(spec: str, structure: str) -> tuple[str, MetaTensor, np.ndarray]:
    """``(case id, CT at 2.5 mm, structure mask)`` of ``FOLDER:INDEX``."""
    case = case_at(spec, structure)
    image = Spacing(pixdim=(SPACING_MM,) * 3, mode="bilinear")(load_ras(case.image).float())
    label = Spacing(pixdim=(SPACING_MM,) * 3, mode="nearest")(load_ras(case.label).float())
    return case.case_id, image, np.isin(np.asarray(label[0]).round().astype(int), case.targets[structure])


def _cube(mask: np.ndarray, half: int) -> tuple[slice, ...] | None:
    """The cube of ``half`` voxels either side of the mask's centroid, or None where it leaves the volume."""
    centre = np.round(np.argwhere(mask).mean(0)).astype(int)
    if any(c - half < 0 or c + half > n for c, n in zip(centre, mask.shape)):
        return None
    return tuple(slice(c - half, c + half) for c in centre)


def main(ckpt: str, structure: str, spec_a: str, spec_b: str, halves_mm: list[float]) -> None:
    """One line per half-width and direction."""
    cases = [_case(spec_a, structure), _case(spec_b, structure)]
    segmenter = Segmenter(*load_for_inference(ckpt), postprocess=False)
    for half_mm in halves_mm:
        half = int(round(half_mm / SPACING_MM))
        for (source_id, source, source_mask), (target_id, target, target_mask) in (cases, cases[::-1]):
            source_box, target_box = _cube(source_mask, half), _cube(target_mask, half)
            name = f"{source_id}'s {structure} with +-{half_mm:.0f} mm pasted into {target_id}"
            if source_box is None or target_box is None:
                print(f"{name:60s} | the cube leaves a volume", flush=True)
                continue
            image = target.clone()
            image[(0, *target_box)] = source[(0, *source_box)]
            truth = np.zeros_like(target_mask)
            truth[target_box] = source_mask[source_box]
            with torch.inference_mode():
                probability = np.asarray(segmenter.predict(image, [structure]).probability[0])
            painted = probability > 0.5
            print(
                f"{name:60s} | prob in truth {probability[truth].mean():.2f} | Dice {dice(painted, truth):.2f} | "
                f"painted {int(painted.sum())}",
                flush=True,
            )


if __name__ == "__main__":
    if len(sys.argv) < 5:
        raise SystemExit(
            "usage: python scripts/swap_surroundings.py CKPT STRUCTURE FOLDER_A:INDEX FOLDER_B:INDEX [HALF_MM ...]"
        )
    try:
        main(
            sys.argv[1],
            sys.argv[2],
            sys.argv[3],
            sys.argv[4],
            [float(h) for h in sys.argv[5:]] or list(DEFAULT_HALF_MM),
        )
    except DatasetFolderError as err:
        raise SystemExit(str(err)) from None
