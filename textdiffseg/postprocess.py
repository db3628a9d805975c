"""Per-prompt clean-up of predicted masks: organs keep their main pieces, lesions stay inside their organ.

A diffusion sample thresholded at 0.5 often leaves small blobs far from the structure; one blob on the pelvis
dominates a liver's HD95. Anatomy says how many connected pieces a structure has (:data:`PIECES`: a liver is one,
"kidney" (both) two); such a prompt keeps its largest pieces and whatever touches them (a gap of one voxel from
thresholding is not a separate organ). Lesions (:data:`LESION_ORGAN`) may be many, but never outside their organ:
lesion pieces that do not touch it are dropped. The organ is the one segmented in the same request or, when the
request names none, the mask of :func:`region_organs` that the pipeline segments for the lesion (no organ found: no
lesion). Structures not in the tables (free text, ribs, spine, bowel) are left as predicted.

Works on probability maps at the model spacing (``(P, D, H, W)``, before they are resampled to the input grid),
setting the probability of dropped voxels to 0, so the label map and the Dice/HD95 of every caller follow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from scipy import ndimage

FOREGROUND = 0.5
# How many separate pieces a structure has in a CT.
PIECES: dict[str, int] = {
    **dict.fromkeys(
        [
            "liver", "spleen", "left kidney", "right kidney", "pancreas", "colon", "stomach", "gallbladder",
            "urinary bladder", "duodenum", "prostate", "aorta", "inferior vena cava", "portal vein", "celiac trunk",
            "superior mesenteric artery", "heart", "pulmonary artery", "left lung", "right lung", "left upper lobe",
            "left lower lobe", "right upper lobe", "right middle lobe", "right lower lobe", "T12 vertebra",
            "L1 vertebra", "L2 vertebra", "L3 vertebra", "L4 vertebra", "L5 vertebra", "sacrum", "spinal cord",
            "brachiocephalic trunk", "left subclavian artery", "left common carotid artery",
        ],
        1,
    ),
    **dict.fromkeys(["kidney", "lungs", "adrenal gland", "iliac artery", "iliac vein", "hip bone", "femur",
                     "iliopsoas"], 2),
}
# Lesions and the organ they must lie in.
LESION_ORGAN: dict[str, tuple[str, ...]] = {
    "liver tumor": ("liver",),
    "kidney tumor": ("kidney", "left kidney", "right kidney"),
    "kidney cyst": ("kidney", "left kidney", "right kidney"),
    "pancreas tumor": ("pancreas",),
    "colon tumor": ("colon",),
    "lung tumor": ("lungs", "left lung", "right lung"),
}
_CONNECTIVITY = ndimage.generate_binary_structure(3, 3)  # 26-neighbourhood


def keep_main_pieces(mask: np.ndarray, pieces: int) -> np.ndarray:
    """``mask`` without the pieces beyond its ``pieces`` largest, except those touching the kept ones."""
    labels, count = ndimage.label(mask, structure=_CONNECTIVITY)
    if count <= pieces:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    main = np.isin(labels, 1 + np.argsort(sizes)[::-1][:pieces])
    near = ndimage.binary_dilation(main, structure=_CONNECTIVITY, iterations=2)
    touching = np.unique(labels[near & (labels > 0)])
    return np.isin(labels, touching)


def keep_inside(mask: np.ndarray, region: np.ndarray) -> np.ndarray:
    """The pieces of ``mask`` that touch ``region`` (dilated by one voxel)."""
    labels, count = ndimage.label(mask, structure=_CONNECTIVITY)
    if count == 0:
        return mask
    near = ndimage.binary_dilation(region, structure=_CONNECTIVITY)
    inside = np.unique(labels[near & (labels > 0)])
    return np.isin(labels, inside)


def region_organs(structures: Sequence[str | None]) -> list[str]:
    """The organs to segment for the lesions of a request that names none of their organs (the first of each
    lesion's :data:`LESION_ORGAN`: "kidney" for "kidney tumor"), sorted, each once."""
    named = set(structures)
    return sorted(
        {LESION_ORGAN[name][0] for name in named if name in LESION_ORGAN and not named & set(LESION_ORGAN[name])}
    )


def clean_probabilities(
    probability: torch.Tensor,
    structures: Sequence[str | None],
    organs: Mapping[str, np.ndarray] | None = None,
) -> list[str]:
    """Apply the module's rules in place to ``(P, D, H, W)`` probabilities; returns a note per changed prompt.

    Args:
        probability: per-prompt foreground probabilities at the model spacing (changed in place).
        structures: the structure each prompt was understood as (vocabulary name), ``None`` for free text.
        organs: masks (``(D, H, W)`` bool, same grid) of organs segmented for lesions whose request names none of
            their organs (:func:`region_organs`); a lesion with neither is left as predicted.
    """
    if probability.shape[0] != len(structures):
        raise ValueError(f"{probability.shape[0]} probability maps for {len(structures)} structures")
    masks = [(probability[i] > FOREGROUND).cpu().numpy() for i in range(len(structures))]
    organs = organs or {}
    notes = []
    for i, name in enumerate(structures):
        if name in PIECES:
            kept = keep_main_pieces(masks[i], PIECES[name])
            why = "stray voxel(s) at the model spacing removed"
        elif name in LESION_ORGAN:
            named = {other: masks[j] for j, other in enumerate(structures) if other in LESION_ORGAN[name]}
            regions = named or {o: organs[o] for o in LESION_ORGAN[name] if o in organs}
            if not regions:
                continue
            kept = keep_inside(masks[i], np.logical_or.reduce(list(regions.values())))
            why = f"voxel(s) at the model spacing outside the {' / '.join(sorted(regions))} removed"
        else:
            continue
        dropped = int(masks[i].sum() - kept.sum())
        if dropped:
            probability[i][torch.from_numpy(masks[i] & ~kept).to(probability.device)] = 0.0
            notes.append(f"{name}: {dropped} {why}")
    return notes
