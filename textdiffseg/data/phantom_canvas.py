"""The phantom's canvas: an HU image and a label map being painted, shape by shape."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import zoom as nd_zoom

from textdiffseg.data.phantom_shapes import Box, VoxelGrid


class Canvas:
    """HU image and label map being painted; later paint wins where masks overlap."""

    def __init__(self, grid: VoxelGrid, rng: np.random.Generator) -> None:
        self.grid = grid
        self.rng = rng
        self.hu = np.full(grid.shape, -1000.0, np.float32)
        self.label = np.zeros(grid.shape, np.uint8)

    def paint(
        self,
        box: Box | None,
        mask: np.ndarray,
        hu: float | np.ndarray,
        label: int | None = None,
        within: np.ndarray | None = None,
    ) -> np.ndarray:
        """Write ``hu`` (and ``label``) where ``mask`` (and, if given, ``within`` on the same box) is true."""
        if box is None or not mask.any():
            return mask
        if within is not None:
            mask = mask & within
        region = self.hu[box]
        region[mask] = hu[mask] if isinstance(hu, np.ndarray) else hu
        if label is not None:
            self.label[box][mask] = label
        return mask

    def texture(
        self, box: Box, shape: tuple[int, ...], base: float, amplitude: float, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """A smooth low-frequency HU field (parenchymal heterogeneity) around ``base`` (drawn from ``rng``, by
        default the case's stream)."""
        coarse = (rng or self.rng).normal(0.0, 1.0, size=tuple(max(2, s // 12) for s in shape))
        zoom = [s / c for s, c in zip(shape, coarse.shape)]
        field_ = nd_zoom(coarse, zoom, order=1)[: shape[0], : shape[1], : shape[2]]
        field_ = np.pad(field_, [(0, s - f) for s, f in zip(shape, field_.shape)], mode="edge")
        return (base + amplitude * field_).astype(np.float32)
