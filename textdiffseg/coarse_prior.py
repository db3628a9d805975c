"""What the fine stage of zoom-in is trained with in place of a coarse pass: the truth, degraded as a coarse pass
degrades it.

At inference the fine stage (``textdiffseg.zoom_in``) gets the coarse model's probability of its prompt, made at
5 mm and resampled to the fine grid. Training draws that prior from the target: pooled to the coarse voxel and
back (blurred edges), grown, shrunk or shifted by a few voxels, at a random confidence; sometimes missed entirely
(lesions often are), and for absent structures sometimes a spurious blob (a coarse false positive the fine stage
must reject).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

COARSE_FACTOR = (3, 3, 2)  # fine voxels per coarse voxel: 5 mm coarse over 1.5 x 1.5 x 2.5 mm fine
MISS_RATE = 0.2  # default share of present structures whose prior is empty
SPURIOUS_RATE = 0.2  # share of absent structures given a false blob
MAX_SHIFT = 3  # fine voxels


def _grow_or_shrink(mask: torch.Tensor, change: int) -> torch.Tensor:
    """Dilate (``change`` > 0) or erode (< 0) a (1, 1, D, H, W) soft mask by ``|change|`` voxels."""
    size = 2 * abs(change) + 1
    if change > 0:
        return F.max_pool3d(mask, size, stride=1, padding=abs(change))
    if change < 0:
        return -F.max_pool3d(-mask, size, stride=1, padding=abs(change))
    return mask


def _blob(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """A sphere of 3-8 voxels' radius somewhere in a (D, H, W) box."""
    centre = [int(torch.randint(0, s, (1,), generator=generator)) for s in shape]
    radius = float(torch.empty(1).uniform_(3, 8, generator=generator))
    grids = torch.meshgrid(*(torch.arange(s, dtype=torch.float32) for s in shape), indexing="ij")
    distance = sum((g - c) ** 2 for g, c in zip(grids, centre))
    return (distance <= radius**2).float()


def simulate_coarse_prior(
    targets: torch.Tensor, generator: torch.Generator, miss_rate: float = MISS_RATE
) -> torch.Tensor:
    """A coarse pass's probability of each prompt, ``(P, 1, D, H, W)``, drawn from the targets of the same shape.

    ``miss_rate``: the share of present structures given no prior (a fine stage for what the coarse pass rarely
    finds, such as lesions, is trained with a high one)."""
    priors = torch.zeros_like(targets, dtype=torch.float32)
    shape = tuple(targets.shape[2:])
    for p in range(targets.shape[0]):
        target = targets[p : p + 1].float()
        draw = float(torch.rand(1, generator=generator))
        if target.sum() > 0:
            if draw < miss_rate:
                continue
            coarse = F.avg_pool3d(target, COARSE_FACTOR, stride=COARSE_FACTOR, ceil_mode=True)
            prior = F.interpolate(coarse, size=shape, mode="trilinear", align_corners=False)
            prior = _grow_or_shrink(prior, int(torch.randint(-1, 3, (1,), generator=generator)))
            shifts = [int(v) for v in torch.randint(-MAX_SHIFT, MAX_SHIFT + 1, (3,), generator=generator)]
            prior = torch.roll(prior, shifts, dims=(2, 3, 4))
        elif draw < SPURIOUS_RATE:
            prior = _blob(shape, generator)[None, None]
        else:
            continue
        confidence = float(torch.empty(1).uniform_(0.6, 1.0, generator=generator))
        priors[p] = (prior * confidence).clamp(0, 1)[0]
    return priors
