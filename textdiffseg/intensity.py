"""CT intensities to model input: one channel per HU window (MONAI ``ScaleIntensityRange``, clipped to [0, 1]).

One window (the default, and every checkpoint without ``extra_windows``) gives exactly the one-channel input of
earlier versions. Several windows keep what a single soft-tissue window merges: bone and dense contrast (both
above its top), air and fat (both below its bottom).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.data import MetaTensor
from monai.transforms import ScaleIntensityRange


class HUWindows:
    """``(1, ...)`` HU -> ``(len(windows), ...)`` in [0, 1], one clipped linear window per channel.

    Args:
        windows: ``(low, high)`` HU pairs; a single pair may be given as is.
    """

    def __init__(self, windows: Sequence[Sequence[float]] | Sequence[float]) -> None:
        if len(windows) == 2 and not isinstance(windows[0], Sequence):
            windows = [windows]  # type: ignore[list-item]
        self.windows = tuple((float(lo), float(hi)) for lo, hi in windows)  # type: ignore[misc]
        self._scales = [
            ScaleIntensityRange(a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True) for lo, hi in self.windows
        ]

    def __call__(self, hu: torch.Tensor) -> torch.Tensor:
        """The windows of ``hu`` as a plain tensor: MONAI returns a ``MetaTensor``, whose metadata bookkeeping on
        every later operation made training several times slower."""
        if hu.shape[0] != 1:
            raise ValueError(f"HUWindows expects a one-channel HU image, got {hu.shape[0]} channels")
        channels = [plain_tensor(scale(hu)) for scale in self._scales]
        return channels[0] if len(channels) == 1 else torch.cat(channels, dim=0)


def plain_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` without MONAI's metadata (training math on a ``MetaTensor`` is several times slower)."""
    return tensor.as_tensor() if isinstance(tensor, MetaTensor) else tensor
