"""Tissue-level HU randomisation of a training patch: the look of one CT changed into the look of another.

MONAI's intensity transforms (``textdiffseg.augment``) shift and scale the whole patch; the organs keep their HU
relative to each other and to fat. A model trained that way learns one generator's (or one patient's) contrast:
a portal-venous liver 60 HU brighter than the spleen, organs outlined by dark fat. Real patients differ in exactly
these: a non-contrast scan (every enhancing organ within a few tens of HU of muscle), an arterial one (a bright aorta
and renal cortex, a pale liver), a thin patient (almost no fat between the organs). This transform draws one of
those looks per patch (or several), on HU before windowing, from the label map the patch already carries:

- **per-structure offsets**: each labelled structure moves by its own random HU (as SynthSeg draws each label's
  intensity; here a bounded shift of the real or phantom intensity, so texture and partial volume stay);
- **non-contrast**: every soft-tissue voxel above the fat range is compressed towards 40 HU;
- **enhancement scale**: voxels above 100 HU (enhancing organs, vessels, bone) stretched or shrunk about 100 HU,
  an arterial or a late phase;
- **little fat**: fat (-200..-20 HU) pulled towards soft tissue, so organs touch without a dark rim.

Once a patch is chosen (``probability``), the per-structure offsets always apply; then non-contrast (its own
chance) or else the enhancement scale (its own chance), and independently little fat. The label is never changed,
nor is air (lungs, bowel gas, outside the body).
"""

from __future__ import annotations

import numpy as np
import torch

SOFT_TISSUE_HU = (-20.0, 400.0)  # what "non-contrast" compresses (above fat, below dense bone)
NON_CONTRAST_CENTRE_HU = 40.0
ENHANCEMENT_PIVOT_HU = 100.0
FAT_HU = (-200.0, -20.0)
FAT_TARGET_HU = 30.0


class TissueIntensityAugmenter:
    """``(1, *roi)`` HU patch and its ``(1, *roi)`` label map -> the patch with one tissue look drawn at random.

    Args:
        probability: share of patches changed at all (0 leaves every patch untouched).
        structure_shift_hu: each labelled structure moves by up to this many HU (uniform, either sign).
        non_contrast_prob, enhancement_prob, little_fat_prob: per changed patch, the chance of each look.
        seed: seeds the draws.
    """

    def __init__(
        self,
        probability: float,
        structure_shift_hu: float = 60.0,
        non_contrast_prob: float = 0.35,
        enhancement_prob: float = 0.35,
        little_fat_prob: float = 0.35,
        seed: int = 0,
    ) -> None:
        for name, p in (
            ("probability", probability),
            ("non_contrast_prob", non_contrast_prob),
            ("enhancement_prob", enhancement_prob),
            ("little_fat_prob", little_fat_prob),
        ):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {p}")
        if structure_shift_hu < 0:
            raise ValueError("structure_shift_hu must be >= 0")
        self.probability = probability
        self.structure_shift_hu = structure_shift_hu
        self.non_contrast_prob = non_contrast_prob
        self.enhancement_prob = enhancement_prob
        self.little_fat_prob = little_fat_prob
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Restart the draws from ``seed``."""
        self.rng = np.random.default_rng(seed)

    def __call__(self, hu: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """Return a changed copy of ``hu`` (or ``hu`` itself when this patch is left alone)."""
        rng = self.rng
        if not self.probability or rng.random() >= self.probability:
            return hu
        out = hu.clone()
        if self.structure_shift_hu:
            values = torch.unique(label)
            for value in values[values != 0].tolist():
                inside = (label == value) & (hu > FAT_HU[1])  # never turns a structure's gas or fat around
                out[inside] += float(rng.uniform(-self.structure_shift_hu, self.structure_shift_hu))
        if rng.random() < self.non_contrast_prob:
            soft = (out > SOFT_TISSUE_HU[0]) & (out < SOFT_TISSUE_HU[1])
            out[soft] = NON_CONTRAST_CENTRE_HU + (out[soft] - NON_CONTRAST_CENTRE_HU) * float(rng.uniform(0.15, 0.5))
        elif rng.random() < self.enhancement_prob:
            bright = out > ENHANCEMENT_PIVOT_HU
            out[bright] = ENHANCEMENT_PIVOT_HU + (out[bright] - ENHANCEMENT_PIVOT_HU) * float(rng.uniform(0.6, 1.8))
        if rng.random() < self.little_fat_prob:
            fat = (hu > FAT_HU[0]) & (hu < FAT_HU[1])
            out[fat] += (FAT_TARGET_HU - out[fat]) * float(rng.uniform(0.3, 0.85))
        return out
