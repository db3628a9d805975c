"""Train-time augmentation of a prompted patch (MONAI random dictionary transforms), seeded.

Intensity (HU shift and scale: contrast phase and scanner calibration; noise; blur; gamma), small rotations and
scaling, and an elastic deformation at low probability. Never a flip: prompts are sided ("left kidney"), and a
mirrored patch would teach the model to answer "left" with the right organ. Rotations are proper rotations (no
reflection) of at most ~11 degrees, so left stays left.

The HU-level transforms run before windowing (so an HU shift moves every window consistently); the gamma change runs
on the windowed [0, 1] channels.
"""

from __future__ import annotations

from collections.abc import Sequence

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

MAX_ROTATION_RAD = 0.2  # about 11 degrees about each axis
MAX_SCALE = 0.15  # +-15 % zoom


class PatchAugmenter:
    """``(1, *roi)`` HU patch and ``(*roi)`` label -> augmented ``(C, *roi)`` model input and aligned label.

    Args:
        windows: the model's HU windows (``ModelConfig.input_windows``).
        seed: seeds every random transform (same seed = same augmentations).
    """

    def __init__(self, windows: Sequence[Sequence[float]], seed: int = 0) -> None:
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
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Restart every random transform from ``seed`` (a background worker's own stream)."""
        self.spatial.set_random_state(seed=seed)
        self.contrast.set_random_state(seed=seed + 1)

    def __call__(self, hu: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        data = self.spatial({"hu": hu.float(), "label": label[None].float()})
        image = self.window(plain_tensor(data["hu"]))
        image = plain_tensor(self.contrast({"image": image})["image"]).clamp(0.0, 1.0)
        out_label = plain_tensor(data["label"])[0].round().to(label.dtype)
        return image.float(), out_label
