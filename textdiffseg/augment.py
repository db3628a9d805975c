"""Train-time augmentation of a prompted patch (MONAI random dictionary transforms), seeded.

Intensity (HU shift and scale: contrast phase and scanner calibration; noise; blur; gamma), small rotations and
scaling, and an elastic deformation at low probability. Never a flip: prompts are sided ("left kidney"), and a
mirrored patch would teach the model to answer "left" with the right organ. Rotations are proper rotations (no
reflection) of at most ~11 degrees, so left stays left.

Optionally (``scan_range_prob``) the scan ends inside the patch: air beyond a random slice, nothing labelled there,
so that a model does not need the whole abdomen in view to find an organ (a chest CT that stops in the upper
abdomen).

Optionally (``tissue_prob``) the patch takes another scan's tissue look (``textdiffseg.tissue_augment``: per-structure
HU, non-contrast, arterial or late enhancement, little fat), so that the model does not learn one contrast.

The HU-level transforms run before windowing (so an HU shift moves every window consistently); the gamma change runs
on the windowed [0, 1] channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.transforms import (
    Compose,
    Rand3DElasticd,
    RandAdjustContrastd,
    RandAffined,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandScaleIntensityd,
    RandShiftIntensityd,
)

from textdiffseg.intensity import HUWindows, plain_tensor
from textdiffseg.tissue_augment import TissueIntensityAugmenter

MAX_ROTATION_RAD = 0.2  # about 11 degrees about each axis
MAX_SCALE = 0.15  # +-15 % zoom
AIR_HU = -1024.0


class PatchAugmenter:
    """``(1, *roi)`` HU patch and ``(*roi)`` label -> augmented ``(C, *roi)`` model input and aligned label.

    Args:
        windows: the model's HU windows (``ModelConfig.input_windows``).
        seed: seeds every random transform (same seed = same augmentations).
        scan_range_prob: share of patches whose scan ends inside them (:meth:`_end_scan`); 0 (the default) draws
            exactly what the augmenter drew before the option existed.
        tissue_prob: share of patches given another scan's tissue look (:class:`TissueIntensityAugmenter`); 0 (the
            default) leaves the other draws as they were.
    """

    def __init__(
        self, windows: Sequence[Sequence[float]], seed: int = 0, scan_range_prob: float = 0.0, tissue_prob: float = 0.0
    ) -> None:
        self.window = HUWindows(windows)
        keys = ("hu", "label")
        self.spatial = Compose(
            [
                RandAffined(
                    keys=keys,
                    prob=0.5,
                    rotate_range=(MAX_ROTATION_RAD,) * 3,
                    scale_range=(MAX_SCALE,) * 3,
                    mode=("bilinear", "nearest"),
                    padding_mode="border",
                ),
                Rand3DElasticd(
                    keys=keys,
                    prob=0.1,
                    sigma_range=(5.0, 8.0),
                    magnitude_range=(20.0, 60.0),
                    mode=("bilinear", "nearest"),
                    padding_mode="border",
                ),
                RandShiftIntensityd(keys="hu", offsets=40.0, prob=0.5),
                RandScaleIntensityd(keys="hu", factors=0.1, prob=0.5),
                RandGaussianNoised(keys="hu", std=25.0, prob=0.3),
                RandGaussianSmoothd(keys="hu", sigma_x=(0.25, 1.0), sigma_y=(0.25, 1.0), sigma_z=(0.25, 1.0), prob=0.2),
            ]
        )
        self.contrast = RandAdjustContrastd(keys="image", gamma=(0.7, 1.5), prob=0.3)
        if not 0.0 <= scan_range_prob <= 1.0:
            raise ValueError("scan_range_prob must be between 0 and 1")
        self.scan_range_prob = scan_range_prob
        self.tissue = TissueIntensityAugmenter(tissue_prob) if tissue_prob else None
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Restart every random transform from ``seed`` (a background worker's own stream)."""
        self.spatial.set_random_state(seed=seed)
        self.contrast.set_random_state(seed=seed + 1)
        self.scan_range_rng = np.random.default_rng(seed + 2)
        if self.tissue is not None:
            self.tissue.reseed(seed + 3)

    def _end_scan(self, hu: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """With ``scan_range_prob``: the scan ends inside the patch, above or below (air beyond, nothing labelled),
        keeping 30-90 % of its slices, as a chest CT ends in the upper abdomen or an abdominal CT at the diaphragm
        (what inference sees there: its windows are padded with air)."""
        rng = self.scan_range_rng
        if not self.scan_range_prob or rng.random() >= self.scan_range_prob:
            return hu, label
        depth = hu.shape[-1]
        keep = int(round(depth * rng.uniform(0.3, 0.9)))
        beyond = slice(keep, None) if rng.random() < 0.5 else slice(None, depth - keep)
        hu, label = hu.clone(), label.clone()
        hu[..., beyond] = AIR_HU
        label[..., beyond] = 0
        return hu, label

    def __call__(self, hu: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        data = self.spatial({"hu": hu.float(), "label": label[None].float()})
        data["hu"], data["label"] = self._end_scan(plain_tensor(data["hu"]), plain_tensor(data["label"]))
        if self.tissue is not None:
            data["hu"] = self.tissue(data["hu"], data["label"].round())
        image = self.window(data["hu"])
        image = plain_tensor(self.contrast({"image": image})["image"]).clamp(0.0, 1.0)
        out_label = plain_tensor(data["label"])[0].round().to(label.dtype)
        return image.float(), out_label
