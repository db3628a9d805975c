"""Zoom-out-zoom-in: a fine pass at 1.5 mm in-plane over the region the coarse pass found (SegVol's idea, here with
a latent-diffusion fine stage that also sees the coarse result).

The coarse model segments the whole CT at its spacing (5 mm). For each prompt the fine stage was trained on, the
region its coarse mask covers plus :data:`MARGIN_MM` (for lesions and the pancreas also their
:data:`SEARCH_REGION`, with coarse passes of the organs the request does not name, plus :data:`SEARCH_MARGIN_MM`)
is cut from the *input* CT, resampled to the fine stage's spacing and segmented again by the fine stage, which gets
the same text and the coarse probability of the prompt (``textdiffseg.fine_stage``); the fine mask replaces the
coarse one inside that box. Large regions are tiled by the fine stage's sliding window.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Orientation, Spacing, SpatialCrop

from textdiffseg.input_grid import to_input_grid
from textdiffseg.intensity import HUWindows
from textdiffseg.postprocess import FOREGROUND, clean_probabilities

MARGIN_MM = 15.0  # around the coarse region: a coarse voxel of error and the organ's edge
FINE_OVERLAP = 0.1  # sliding-window overlap of the fine pass (its regions are large at 1.5 mm; 0.25 costs 1.5x)
SEARCH_MARGIN_MM = 25.0  # around a search region (its organ, or the neighbours of an organ the coarse pass misses)
# Where a structure is looked for besides its own coarse mask: lesions in their organ; the pancreas (which a 5 mm
# coarse pass hardly sees) between the kidneys and the splenic hilum, as do its tumours.
SEARCH_REGION: dict[str, tuple[str, ...]] = {
    "liver tumor": ("liver",),
    "kidney tumor": ("kidney",),
    "kidney cyst": ("kidney",),
    "colon tumor": ("colon",),
    "lung tumor": ("lungs",),
    "pancreas": ("spleen", "kidney"),
    "pancreas tumor": ("spleen", "kidney"),
}

Box = tuple[slice, slice, slice]


@dataclass
class ZoomInput:
    """What the zoom-in step needs from the coarse pass (``WholeVolumePipeline.zoom_in``)."""

    original: MetaTensor  # the input CT (1, X, Y, Z) in HU
    affine: np.ndarray  # the coarse grid's affine
    spacing: tuple[float, float, float]  # the coarse grid's spacing
    volume: torch.Tensor  # the normalised CT on the coarse grid (C, D, H, W)
    probability: torch.Tensor  # the coarse probabilities (P, D, H, W), cleaned
    anatomy: list[str | None]  # the structure each prompt was understood as (None: free text or clicked)
    organs: dict[str, np.ndarray] = field(default_factory=dict)  # coarse masks segmented for lesions (postprocess)


def coarse_box(region: np.ndarray, spacing: Sequence[float], margin_mm: float = MARGIN_MM) -> Box | None:
    """The bounding box of a coarse-grid ``region`` grown by ``margin_mm`` (clipped to the grid); ``None`` if empty."""
    found = np.nonzero(region)
    if not len(found[0]):
        return None
    margins = [math.ceil(margin_mm / s) for s in spacing]
    return tuple(  # type: ignore[return-value]
        slice(max(0, int(i.min()) - m), min(n, int(i.max()) + 1 + m)) for i, m, n in zip(found, margins, region.shape)
    )


def input_box(box: Box, coarse_affine: np.ndarray, input_affine: np.ndarray, input_shape: Sequence[int]) -> Box:
    """The input-grid box that covers a coarse-grid ``box`` (its voxels' outer edges mapped through both affines)."""
    edges = np.array(list(itertools.product(*[(b.start - 0.5, b.stop - 0.5) for b in box])), np.float64)
    to_input = np.linalg.inv(np.asarray(input_affine, np.float64)) @ np.asarray(coarse_affine, np.float64)
    points = edges @ to_input[:3, :3].T + to_input[:3, 3]
    low = np.floor(points.min(0) + 0.5).astype(int)
    high = np.ceil(points.max(0) + 0.5).astype(int)
    return tuple(slice(max(0, int(lo)), min(int(n), int(hi))) for lo, hi, n in zip(low, high, input_shape))  # type: ignore[return-value]


@dataclass
class FineRegion:
    """One prompt's fine-pass region: the crop of the input CT resampled to the fine spacing."""

    box: Box  # on the input grid
    crop: MetaTensor  # the input CT inside ``box`` (with its affine)
    fine: MetaTensor  # ``crop`` at the fine spacing, RAS


def fine_region(original: MetaTensor, box: Box, spacing: Sequence[float]) -> FineRegion:
    """Cut ``box`` from the input CT and resample it to the fine stage's ``spacing``."""
    crop = SpatialCrop(roi_start=[b.start for b in box], roi_end=[b.stop for b in box])(original)
    fine = Spacing(pixdim=tuple(spacing), mode="bilinear")(Orientation(axcodes="RAS")(crop))
    return FineRegion(box, crop, fine)  # type: ignore[arg-type]


@dataclass
class FinePass:
    """The fine stage's result for one prompt on the input grid, inside ``box``."""

    box: Box
    probability: np.ndarray  # the crop's shape
    entropy: np.ndarray


def run_fine_pass(
    segmenter: object,
    region: FineRegion,
    prompt: str,
    coarse_probability: torch.Tensor,
    coarse_affine: np.ndarray,
    anatomy: str | None,
) -> FinePass:
    """Segment ``prompt`` in a :class:`FineRegion` with a fine stage's :class:`textdiffseg.inference.Segmenter`
    (given the coarse probability, resampled to the fine grid) and bring the result back to the input grid.

    The fine mask of an organ keeps its main pieces (``textdiffseg.postprocess``), as the coarse one does."""
    volume = torch.as_tensor(HUWindows(segmenter.config.input_windows)(region.fine.as_tensor())).float()  # type: ignore[attr-defined]
    prior = to_input_grid(coarse_probability[None].float(), coarse_affine, region.fine)
    out = segmenter.predict_normalized(volume, [prompt], prior=torch.from_numpy(prior)[None])  # type: ignore[attr-defined]
    probability, entropy = out[0], out[2]
    if anatomy is not None:
        with torch.inference_mode():
            clean_probabilities(probability, [anatomy])
    fine_affine = np.asarray(region.fine.affine)
    return FinePass(
        region.box,
        to_input_grid(probability, fine_affine, region.crop)[0],
        to_input_grid(entropy, fine_affine, region.crop)[0],
    )


def search_region(own: np.ndarray, neighbours: Sequence[np.ndarray]) -> np.ndarray:
    """Where a prompt with a :data:`SEARCH_REGION` is refined: its own coarse mask and its neighbours' (a lesion the
    coarse pass missed is searched for inside its organ)."""
    region = own.copy()
    for mask in neighbours:
        region |= mask
    return region


def foreground(probability: torch.Tensor) -> np.ndarray:
    """The coarse mask of one prompt's probability map."""
    return (probability > FOREGROUND).cpu().numpy()


@dataclass
class ZoomPlan:
    """What :func:`refine_prompts` may do: the fine stage's segmenter, the structures it was trained on, a coarse
    pass for organs the request did not name, and the denoiser calls left in the request's budget (None: no
    limit)."""

    fine: object  # a textdiffseg.inference.Segmenter around the fine stage
    refinable: frozenset[str]
    coarse_pass: Callable[[list[str]], torch.Tensor]  # organs -> their coarse probabilities (N, D, H, W)
    coarse_calls: int  # denoiser calls of one prompt's coarse pass
    budget: int | None


def refine_prompts(
    plan: ZoomPlan,
    coarse: ZoomInput,
    prompts: list[str],
    probability: np.ndarray,
    uncertainty: np.ndarray,
) -> tuple[list[list[str]], list[str]]:
    """Run the fine pass of every prompt the fine stage knows, writing its result into ``probability`` and
    ``uncertainty`` (``(P, *input grid)``) inside its box; returns each prompt's passes and why others got none."""
    passes: list[list[str]] = [["coarse"] for _ in prompts]
    notes: list[str] = []
    masks: dict[str, np.ndarray] = dict(coarse.organs)  # organs already segmented for lesions: no second pass
    for i, name in enumerate(coarse.anatomy):
        if name is not None:
            masks.setdefault(name, foreground(coarse.probability[i]))
    budget = plan.budget
    fine = plan.fine
    refined = [name in plan.refinable for name in coarse.anatomy]
    # neighbours the request does not name: one coarse pass for all of them (image features shared)
    missing = sorted(
        {n for name, r in zip(coarse.anatomy, refined) if r for n in SEARCH_REGION.get(name, ())} - set(masks)
    )
    calls = len(missing) * plan.coarse_calls
    if missing and (budget is None or calls <= budget):
        budget = None if budget is None else budget - calls
        neighbour_probability = plan.coarse_pass(missing)
        masks.update({n: foreground(neighbour_probability[k]) for k, n in enumerate(missing)})
    for i, (prompt, name) in enumerate(zip(prompts, coarse.anatomy)):
        if name is None or not refined[i]:
            continue
        if any(n not in masks for n in SEARCH_REGION.get(name, ())):
            notes.append(f"{prompt}: no fine pass, the coarse pass of its search region is over what the budget leaves")
            continue
        region, margin = masks[name], MARGIN_MM
        if name in SEARCH_REGION:
            region = search_region(region, [masks[n] for n in SEARCH_REGION[name]])
            margin = SEARCH_MARGIN_MM
        box = coarse_box(region, coarse.spacing, margin)
        if box is None:
            notes.append(f"{prompt}: no fine pass, the coarse pass found nothing to zoom in on")
            continue
        region_box = input_box(box, coarse.affine, np.asarray(coarse.original.affine), coarse.original.shape[1:])
        zoomed = fine_region(coarse.original, region_box, fine.config.spacing)  # type: ignore[attr-defined]
        calls = fine.denoiser_calls(1, tuple(zoomed.fine.shape[1:]))  # type: ignore[attr-defined]
        if budget is not None and calls > budget:
            notes.append(f"{prompt}: no fine pass, its {calls:,} denoiser calls are over what the budget leaves")
            continue
        budget = None if budget is None else budget - calls
        result = run_fine_pass(fine, zoomed, prompt, coarse.probability[i], coarse.affine, name)
        probability[i][result.box] = result.probability
        uncertainty[i][result.box] = result.entropy
        passes[i].append("fine")
    return passes, notes
