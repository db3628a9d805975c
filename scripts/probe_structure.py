"""Why a structure is missed: the served model's answer for it under changes of the input that each test one cause.

``python scripts/probe_structure.py CKPT FOLDER CASE_INDEX STRUCTURE`` prints, for the case as given and for each
probe, the mean probability inside the truth, Dice and the voxels painted (no post-processing, one sample):

- **HU**: the structure's own voxels raised by 30, 60 and 100 HU (is it its contrast to the neighbours?);
- **crop**: the CT cut to 160 and 320 mm around the structure's centre (is it something elsewhere in the scan?);
- **scale**: the voxel size told to the model times 0.8 and 1.2 in-plane (is it its size?);
- **texture**: Gaussian noise of 15 and 30 HU added, and the CT smoothed by one voxel (is it how grainy it is?);
- **neighbours**: each other labelled structure within 30 mm of it filled with fat, -100 HU (is it one of them?).

``scripts/swap_surroundings.py`` asks how far around the structure the deciding context lies.

Used on the independent phantom family's spleen (README "Phantoms with a patient's surroundings").
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import numpy as np
import torch
from monai.data import MetaTensor
from scipy.ndimage import distance_transform_edt, gaussian_filter

from textdiffseg.checkpoint import load_for_inference
from textdiffseg.data.folders import DatasetFolderError, case_at
from textdiffseg.data.volumes import load_ras
from textdiffseg.inference import Segmenter
from textdiffseg.model_scores import dice

HU_RAISES = (30.0, 60.0, 100.0)
CROP_HALF_MM = (80.0, 160.0)
INPLANE_SCALES = (0.8, 1.2)
NOISE_HU = (15.0, 30.0)
NEIGHBOUR_MM = 30.0
FAT_HU = -100.0


def probes(
    image: MetaTensor, truth: np.ndarray, others: dict[str, np.ndarray]
) -> Iterator[tuple[str, MetaTensor, np.ndarray]]:
    """``(name, image, truth)`` for the case as given and each probe; ``others``: the case's other structures."""
    yield "as given", image, truth
    for raise_hu in HU_RAISES:
        raised = image.clone()
        raised[0][torch.as_tensor(truth)] += raise_hu
        yield f"structure +{raise_hu:.0f} HU", raised, truth
    centre = np.argwhere(truth).mean(0)
    zooms = np.abs(np.diag(np.asarray(image.affine))[:3])
    for half in CROP_HALF_MM:
        box = tuple(slice(max(int(c - half / z), 0), int(c + half / z)) for c, z in zip(centre, zooms))
        yield f"crop +-{half:.0f} mm around it", image[(slice(None), *box)], truth[box]
    for scale in INPLANE_SCALES:
        scaled = image.clone()
        affine = scaled.affine.clone()
        affine[:3, :2] *= scale
        scaled.affine = affine
        yield f"in-plane scale x{scale}", scaled, truth
    for sigma in NOISE_HU:
        noisy = image.clone()
        noisy[0] += torch.randn(noisy.shape[1:], generator=torch.Generator().manual_seed(0)) * sigma
        yield f"noise {sigma:.0f} HU", noisy, truth
    smoothed = image.clone()
    smoothed[0] = torch.as_tensor(gaussian_filter(np.asarray(image[0], dtype=np.float32), sigma=1.0))
    yield "smoothed 1 voxel", smoothed, truth
    near = distance_transform_edt(~truth, sampling=zooms) <= NEIGHBOUR_MM
    for name, mask in others.items():
        if (mask & near).any() and not (mask & truth).any():
            emptied = image.clone()
            emptied[0][torch.as_tensor(mask)] = FAT_HU
            yield f"{name} -> fat", emptied, truth


def main(ckpt: str, folder: str, index: str, structure: str) -> None:
    """Print one line per probe."""
    case = case_at(f"{folder}:{index}", structure)
    image = load_ras(case.image)
    label = np.asarray(load_ras(case.label)[0]).round().astype(int)
    truth = np.isin(label, case.targets[structure])
    if not truth.any():
        raise SystemExit(f"{case.case_id} has no {structure}")
    model, encoder = load_for_inference(ckpt)
    segmenter = Segmenter(model, encoder, postprocess=False)
    others = {name: np.isin(label, values) for name, values in case.targets.items() if name != structure}
    for name, probed, target in probes(image, truth, others):
        with torch.inference_mode():
            probability = segmenter.predict(probed, [structure]).probability[0]
        mask = probability > 0.5
        print(
            f"{case.case_id} {structure} | {name:26s} | prob in truth {probability[target].mean():.2f} | "
            f"Dice {dice(mask, target):.2f} | painted {int(mask.sum())}",
            flush=True,
        )


if __name__ == "__main__":
    if len(sys.argv) != 5:
        raise SystemExit("usage: python scripts/probe_structure.py CKPT FOLDER CASE_INDEX STRUCTURE")
    try:
        main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4])
    except DatasetFolderError as err:
        raise SystemExit(str(err)) from None
