"""Whole-CT inference: checks, resampling to the model spacing and back, sliding windows, multi-prompt label maps.

``Segmenter.predict`` takes a CT as a MONAI ``MetaTensor`` (channel first, HU, any orientation/spacing) and returns
per-prompt probabilities, uncertainty and a label map on exactly the input's voxel grid (same affine and shape).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import sliding_window_inference
from monai.transforms import Orientation, ResampleToMatch, ScaleIntensityRange, Spacing

from textdiffseg.diffusion.sampling import sample_masks
from textdiffseg.networks.model import TextDiffSeg
from textdiffseg.serving_utils import label_map_from_probabilities
from textdiffseg.text.encoder import TextEncoder

DEFAULT_MAX_VOXELS = 64_000_000  # of the volume resampled to the model spacing
MIN_SPACING_MM = 0.05  # voxel sizes outside these bounds are refused (here and in ``input_files``)
MAX_SPACING_MM = 50.0


class InvalidInputError(ValueError):
    """The image cannot be segmented as given; the message names the problem (shown to users as a 4xx)."""


class VolumeTooLargeError(InvalidInputError):
    """The volume resampled to the model spacing exceeds the voxel budget."""


@dataclass
class Prediction:
    """Per-prompt results on the input's voxel grid."""

    prompts: list[str]
    probability: np.ndarray  # (P, X, Y, Z) float32
    uncertainty: np.ndarray  # (P, X, Y, Z) float32, binary entropy (bits) of the ensemble mean
    label_map: np.ndarray  # (X, Y, Z) uint8, value i+1 for prompts[i]; the more confident prompt wins overlaps
    affine: np.ndarray  # 4x4, equal to the input's


def check_image(image: MetaTensor, spacing: tuple[float, float, float], max_voxels: int) -> None:
    """Raise :class:`InvalidInputError` for images that are not a single-channel 3D CT the model can handle."""
    if image.ndim != 4 or image.shape[0] != 1:
        dims = image.ndim - 1 if image.ndim == 4 else image.ndim
        raise InvalidInputError(f"expected a single-channel 3D image, got shape {tuple(image.shape)} ({dims}D)")
    if min(image.shape[1:]) < 2:
        raise InvalidInputError(f"expected a 3D volume, got a {tuple(image.shape[1:])} image (a 2D slice?)")
    if not torch.isfinite(image).all():
        raise InvalidInputError("image contains NaN or infinite values")
    zooms = np.sqrt((np.asarray(image.affine, dtype=float)[:3, :3] ** 2).sum(0))
    if not np.all((zooms >= MIN_SPACING_MM) & (zooms <= MAX_SPACING_MM)):
        raise InvalidInputError(
            f"voxel spacing {tuple(np.round(zooms, 4))} mm is outside {MIN_SPACING_MM:g}-{MAX_SPACING_MM:g} mm"
        )
    resampled = np.prod(np.asarray(image.shape[1:]) * zooms / np.asarray(spacing))
    if resampled > max_voxels:
        raise VolumeTooLargeError(
            f"volume would have {int(resampled):,} voxels at {spacing} mm, over the budget of {max_voxels:,}"
        )


def _axis_weights(n_out: int, scale: float, offset: float, n_in: int) -> tuple[torch.Tensor, ...]:
    """Linear-interpolation indices and weights along one axis; samples outside ``[0, n_in)`` weigh 0 (zeros)."""
    x = scale * torch.arange(n_out, dtype=torch.float64) + offset
    i0 = torch.floor(x)
    frac = x - i0
    i0 = i0.long()
    i1 = i0 + 1
    w0 = (1 - frac) * ((i0 >= 0) & (i0 < n_in))
    w1 = frac * ((i1 >= 0) & (i1 < n_in))
    return i0.clamp(0, n_in - 1), i1.clamp(0, n_in - 1), w0.float(), w1.float()


def to_input_grid(
    maps: torch.Tensor,
    affine: torch.Tensor | np.ndarray,
    original: MetaTensor,
    out: np.ndarray | None = None,
    chunk: int = 32,
) -> np.ndarray:
    """Resample (C, D, H, W) maps on the grid ``affine`` (trilinear, zeros outside) onto ``original``'s voxel grid.

    The same values as MONAI ``ResampleToMatch(mode="bilinear", padding_mode="zeros")`` (to float rounding). When
    the two grids differ by axis flips, permutations, scaling and shifts only (always the case after
    ``Orientation`` + ``Spacing`` of an axis-aligned CT) the interpolation is done one axis at a time and written
    into ``out`` in slabs of ``chunk`` rows: several times faster, and without MONAI's full-size sampling grid
    (12 bytes per output voxel). Oblique grids go through ``ResampleToMatch``.
    """
    shape = tuple(original.shape[1:])
    if out is None:
        out = np.empty((maps.shape[0], *shape), np.float32)
    m = np.linalg.inv(np.asarray(affine, np.float64)) @ np.asarray(original.affine, np.float64)
    r = m[:3, :3]
    perm = [int(np.argmax(np.abs(r[:, j]))) for j in range(3)]
    off_axis = np.abs(r).sum(0) - np.abs(r[perm, range(3)])
    if sorted(perm) != [0, 1, 2] or np.any(off_axis > 1e-6 * np.abs(r).max()):
        resample = ResampleToMatch(mode="bilinear", padding_mode="zeros")
        out[:] = resample(MetaTensor(maps, affine=affine), img_dst=original).as_tensor().numpy()
        return out
    data = maps.permute(0, *(1 + k for k in perm)).float()  # axis j of data now runs along output axis j
    weights = [_axis_weights(shape[j], r[perm[j], j], m[perm[j], 3], data.shape[1 + j]) for j in range(3)]
    for j in (2, 1):  # the small axes first; the last step (output axis 0) copies whole planes
        i0, i1, w0, w1 = weights[j]
        view = [1, 1, 1, 1]
        view[1 + j] = -1
        data = data.index_select(1 + j, i0).mul_(w0.view(view)).add_(data.index_select(1 + j, i1).mul_(w1.view(view)))
    data = data.contiguous()
    i0, i1, w0, w1 = weights[0]
    dest = torch.from_numpy(out)
    for start in range(0, shape[0], chunk):
        end = min(start + chunk, shape[0])
        slab = data.index_select(1, i0[start:end]).mul_(w0[start:end].view(1, -1, 1, 1))
        dest[:, start:end] = slab.add_(data.index_select(1, i1[start:end]).mul_(w1[start:end].view(1, -1, 1, 1)))
    return out


class Segmenter:
    """Runs a trained model on whole CTs.

    Args:
        model: a trained :class:`TextDiffSeg`.
        text_encoder: the encoder the model was trained with (see ``checkpoint.check_text_encoder``).
        steps: DDIM steps (default: the model's ``sampling_steps``).
        ensemble: diffusion samples per prompt; >1 gives a meaningful variance.
        overlap: sliding-window overlap.
        device: torch device.
        seed: seed of the sampling noise (results are reproducible per seed).
        max_voxels: refuse volumes larger than this at the model spacing.
        sw_batch_size: windows handed to the predictor at once (each still gets its own image features).
    """

    def __init__(
        self,
        model: TextDiffSeg,
        text_encoder: TextEncoder,
        steps: int | None = None,
        ensemble: int = 1,
        overlap: float = 0.25,
        device: str | torch.device = "cpu",
        seed: int = 0,
        max_voxels: int = DEFAULT_MAX_VOXELS,
        sw_batch_size: int = 1,
    ) -> None:
        self.model = model.eval().to(device)
        self.text_encoder = text_encoder
        self.config = model.config
        self.steps = steps or self.config.sampling_steps
        self.ensemble = max(1, ensemble)
        self.overlap = overlap
        self.device = torch.device(device)
        self.seed = seed
        self.max_voxels = max_voxels
        self.sw_batch_size = max(1, sw_batch_size)
        lo, hi = self.config.hu_window
        self._scale = ScaleIntensityRange(a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True)

    def predict_normalized(self, volume: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """Sliding-window sampling on a normalised volume at the model spacing.

        Args:
            volume: (1, D, H, W) intensities already scaled to [0, 1].
            prompts: P prompts; text is encoded once and image features once per window.

        Returns:
            (3, P, D, H, W): mean probability, ensemble variance, entropy.
        """
        tokens, mask = self.text_encoder.encode(prompts)
        tokens, mask = tokens.to(self.device), mask.to(self.device)
        generator = torch.Generator(device=self.device).manual_seed(self.seed)
        p = len(prompts)

        def predictor(window: torch.Tensor) -> torch.Tensor:
            outs = []
            for one in window.split(1):  # image features once per window, shared by all prompts
                condition = self.model.condition(one, tokens, mask)
                result = sample_masks(self.model, condition, self.steps, self.ensemble, generator)
                outs.append(
                    torch.cat([result.probability, result.variance, result.entropy], dim=1).view(
                        1, 3 * p, *one.shape[2:]
                    )
                )
            return torch.cat(outs)

        with torch.inference_mode():
            out = sliding_window_inference(
                volume[None].to(self.device),
                self.config.roi_size,
                sw_batch_size=self.sw_batch_size,
                predictor=predictor,
                overlap=self.overlap,
                mode="gaussian",
                padding_mode="constant",
                cval=0.0,
            )
        return out.view(p, 3, *volume.shape[1:]).transpose(0, 1).cpu()

    def predict(self, image: MetaTensor, prompts: list[str]) -> Prediction:
        """Segment ``prompts`` in a CT (``MetaTensor`` (1, X, Y, Z) in HU with its affine)."""
        if not prompts:
            raise InvalidInputError("no prompt given")
        image = image if isinstance(image, MetaTensor) else MetaTensor(image)
        check_image(image, self.config.spacing, self.max_voxels)
        original = image.float()
        resampled = Spacing(pixdim=self.config.spacing, mode="bilinear")(Orientation(axcodes="RAS")(original))
        volume = self._scale(resampled.as_tensor())
        out = self.predict_normalized(volume, prompts)  # (3, P, D, H, W)
        p = len(prompts)
        # Back onto the input grid one map at a time, written in place (probability and entropy only): a 512x512x300
        # CT is 79 M voxels, so resampling every map of every prompt at once would need gigabytes of transient memory.
        probability = np.empty((p, *original.shape[1:]), np.float32)
        uncertainty = np.empty((p, *original.shape[1:]), np.float32)
        for i in range(p):
            to_input_grid(out[0, i][None], resampled.affine, original, out=probability[i : i + 1])
            to_input_grid(out[2, i][None], resampled.affine, original, out=uncertainty[i : i + 1])
        # The label map slab by slab: on a whole 512x512x300 CT, argmax's int64 indices alone would be 0.6 GB per call.
        label_map = np.empty(original.shape[1:], np.uint8)
        for start in range(0, label_map.shape[0], 32):
            slab = probability[:, start : start + 32]
            label_map[start : start + 32] = label_map_from_probabilities(slab, list(range(1, p + 1)))
        return Prediction(list(prompts), probability, uncertainty, label_map, np.asarray(original.affine))
