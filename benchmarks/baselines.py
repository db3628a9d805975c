"""Baselines for the benchmarks: a MONAI ``SegResNet`` multi-label net and a pixel-space conditional diffusion net.

Both run through the library's whole-CT pipeline (``textdiffseg.inference.WholeVolumePipeline``, as
``Segmenter`` does: checks, RAS, resampling to a working spacing, per-prompt resampling back onto the input grid, the
label map) with MONAI ``sliding_window_inference`` and Gaussian blending, and return the same
:class:`~textdiffseg.inference.Prediction`, so ``textdiffseg.evaluate`` scores them unchanged. Their training crops
come from ``textdiffseg.train_data.random_crop``, as TextDiffSeg's do.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import sliding_window_inference
from monai.losses import DiceCELoss
from monai.networks.nets import DiffusionModelUNet, SegResNet
from monai.networks.schedulers import DDIMScheduler
from torch import nn

from textdiffseg.inference import InvalidInputError, Prediction, WholeVolumePipeline
from textdiffseg.train_data import PreparedCase, random_crop


def make_segresnet(out_channels: int, init_filters: int = 16) -> SegResNet:
    """A MONAI SegResNet (3D, 1 input channel) with one sigmoid output channel per structure."""
    return SegResNet(spatial_dims=3, in_channels=1, out_channels=out_channels, init_filters=init_filters)


class PixelDiffusionNet(nn.Module):
    """Diff-UNet-style denoiser: predicts the clean full-resolution masks (x0) from noisy masks and the image.

    The image is concatenated to the noisy masks (one channel per structure) at full working resolution, so every
    DDIM step is a full-resolution 3D UNet pass (Diff-UNet adds a separate image-feature encoder on top; this
    baseline is therefore, if anything, cheaper than Diff-UNet).
    """

    def __init__(self, structures: int, channels: tuple[int, ...] = (16, 32, 64)) -> None:
        super().__init__()
        self.structures = structures
        self.unet = DiffusionModelUNet(
            spatial_dims=3,
            in_channels=structures + 1,
            out_channels=structures,
            num_res_blocks=1,
            channels=channels,
            attention_levels=(False,) * len(channels),
            norm_num_groups=8,
        )

    def forward(self, noisy_masks: torch.Tensor, timesteps: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """``noisy_masks`` (B, S, ...), ``timesteps`` (B,), ``image`` (B, 1, ...) -> x0 estimate (B, S, ...)."""
        return self.unet(torch.cat([noisy_masks, image], dim=1), timesteps)


class DenseSegmenter(WholeVolumePipeline):
    """Whole-CT inference for a net that maps a window (B, 1, ...) to per-structure probabilities (B, S, ...).

    Args:
        net: the window predictor (SegResNet logits go through a sigmoid, see ``sigmoid``).
        structures: names of the output channels; prompts must be among them.
        spacing: working spacing (mm); roi_size: window size at that spacing.
        hu_window: HU range mapped to [0, 1].
        overlap, sw_batch_size: sliding-window settings.
        device: torch device; channels_last: run the net in channels-last-3D memory format.
        sigmoid: apply a sigmoid to the net's output.
    """

    def __init__(
        self,
        net: nn.Module,
        structures: Sequence[str],
        spacing: tuple[float, float, float],
        roi_size: tuple[int, int, int],
        hu_window: tuple[float, float] = (-200.0, 300.0),
        overlap: float = 0.25,
        sw_batch_size: int = 1,
        device: str | torch.device = "cpu",
        channels_last: bool = False,
        sigmoid: bool = True,
    ) -> None:
        super().__init__(spacing, hu_window)
        self.device = torch.device(device)
        self.channels_last = channels_last
        self.net = net.eval().to(self.device)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last_3d)
        self.structures = list(structures)
        self.roi_size = roi_size
        self.overlap = overlap
        self.sw_batch_size = sw_batch_size
        self.sigmoid = sigmoid

    def window_predictor(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The function ``sliding_window_inference`` calls on each batch of windows."""

        def predict(window: torch.Tensor) -> torch.Tensor:
            if self.channels_last:
                window = window.contiguous(memory_format=torch.channels_last_3d)
            out = self.net(window)
            return (torch.sigmoid(out) if self.sigmoid else out).contiguous()

        return predict

    def predict_normalized(self, volume: torch.Tensor) -> torch.Tensor:
        """(1, D, H, W) intensities in [0, 1] at the working spacing -> (S, D, H, W) probabilities."""
        with torch.inference_mode():
            out = sliding_window_inference(
                volume[None].to(self.device),
                self.roi_size,
                sw_batch_size=self.sw_batch_size,
                predictor=self.window_predictor(),
                overlap=self.overlap,
                mode="gaussian",
                padding_mode="constant",
                cval=0.0,
            )
        return out[0].float().cpu()

    def segment_volume(self, volume: torch.Tensor, prompts: list[str]) -> tuple[torch.Tensor, None]:
        """The prompted structures' probability channels; no uncertainty (a single pass has none)."""
        out = self.predict_normalized(volume)
        return out[[self.structures.index(name) for name in prompts]], None

    def predict(self, image: MetaTensor, prompts: list[str], values: Sequence[int] | None = None) -> Prediction:
        """Same contract as ``Segmenter.predict`` (prompts must be structure names); uncertainty is all zeros."""
        unknown = [p for p in prompts if p not in self.structures]
        if not prompts or unknown:
            raise InvalidInputError(f"prompts must be among {self.structures}, got {prompts}")
        return super().predict(image, prompts, values)


class PixelDiffusionSegmenter(DenseSegmenter):
    """Pixel-space conditional DDIM (Diff-UNet style): every window runs ``steps`` full-resolution denoiser passes.

    ``max_windows`` bounds the run time: windows after the first ``max_windows`` are not computed (they return
    zeros) and ``window_seconds`` records the time of the computed ones, so a caller can extrapolate.
    """

    def __init__(
        self,
        net: PixelDiffusionNet,
        structures: Sequence[str],
        spacing: tuple[float, float, float],
        roi_size: tuple[int, int, int],
        steps: int,
        max_windows: int | None = None,
        seed: int = 0,
        **kwargs: object,
    ) -> None:
        super().__init__(net, structures, spacing, roi_size, sigmoid=False, **kwargs)  # type: ignore[arg-type]
        self.steps = steps
        self.max_windows = max_windows
        self.seed = seed
        self.scheduler = DDIMScheduler(1000, schedule="scaled_linear_beta", prediction_type="sample", clip_sample=True)
        self.window_seconds: list[float] = []
        self.windows_seen = 0

    def window_predictor(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """DDIM sampling of full-resolution masks in [-1, 1], returned as probabilities in [0, 1]."""
        generator = torch.Generator(device=self.device).manual_seed(self.seed)
        self.window_seconds, self.windows_seen = [], 0

        def predict(window: torch.Tensor) -> torch.Tensor:
            self.windows_seen += window.shape[0]
            shape = (window.shape[0], len(self.structures), *window.shape[2:])
            if self.max_windows is not None and len(self.window_seconds) >= self.max_windows:
                return torch.zeros(shape, device=window.device, dtype=window.dtype)
            start = time.perf_counter()
            if self.channels_last:
                window = window.contiguous(memory_format=torch.channels_last_3d)
            self.scheduler.set_timesteps(self.steps)
            latent = torch.randn(shape, generator=generator, device=window.device, dtype=window.dtype)
            x0 = latent
            for t in self.scheduler.timesteps:
                t_batch = torch.full((shape[0],), int(t), device=window.device, dtype=torch.long)
                output = self.net(latent, t_batch, window)
                latent, x0 = self.scheduler.step(output, int(t), latent)
            probs = ((x0.clamp(-1, 1) + 1) / 2).contiguous()
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            self.window_seconds.extend([(time.perf_counter() - start) / shape[0]] * shape[0])
            return probs

        return predict


class MultiLabelPatchSampler:
    """Random ``roi`` crops of prepared cases with one binary target channel per structure (zeros if absent)."""

    def __init__(
        self, cases: list[PreparedCase], structures: Sequence[str], roi_size: tuple[int, int, int], seed: int = 0
    ) -> None:
        if not cases:
            raise ValueError("no training cases")
        self.cases = cases
        self.structures = list(structures)
        self.roi_size = roi_size
        self.rng = random.Random(seed)

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One patch ``(1, 1, *roi)`` and its targets ``(1, S, *roi)``."""
        case = self.rng.choice(self.cases)
        image, label = random_crop(case, self.roi_size, self.rng)
        targets = []
        for name in self.structures:
            values = case.targets.get(name)
            mask = torch.isin(label, torch.tensor(values, dtype=label.dtype)) if values else torch.zeros_like(label)
            targets.append(mask.float())
        jitter = 1.0 + 0.05 * (2 * self.rng.random() - 1)
        return (image * jitter)[None], torch.stack(targets)[None]


class TrainingClock:
    """A wall-clock training budget with evaluation marks: ``marks`` evenly spaced points of the budget, the last
    being its end. At each earlier point :meth:`running` calls ``on_mark(steps)`` (a learning curve), and the clock
    stops while it runs, so every method gets the same training time whatever its evaluation costs."""

    def __init__(self, budget_s: float, marks: int = 1, on_mark: Callable[[int], None] | None = None) -> None:
        self.budget_s = budget_s
        self._points = [budget_s * k / marks for k in range(1, marks)]
        self._on_mark = on_mark
        self._start = time.perf_counter()
        self._paused = 0.0

    def elapsed(self) -> float:
        """Training seconds so far (evaluations not counted)."""
        return time.perf_counter() - self._start - self._paused

    def running(self, steps: int) -> bool:
        """Call before each step: runs the evaluation of any mark that is due; False once the budget is spent."""
        while self._points and self.elapsed() >= self._points[0]:
            self._points.pop(0)
            if self._on_mark is not None:
                before = time.perf_counter()
                self._on_mark(steps)
                self._paused += time.perf_counter() - before
        return self.elapsed() < self.budget_s


def train_segresnet(
    net: nn.Module,
    sampler: MultiLabelPatchSampler,
    budget_s: float,
    lr: float = 2e-3,
    max_steps: int | None = None,
    clock: TrainingClock | None = None,
) -> dict[str, float]:
    """Train with Dice + BCE (MONAI ``DiceCELoss``, sigmoid) for ``budget_s`` wall-clock seconds, one patch a step
    (``clock``: the same budget with evaluation marks; its ``on_mark`` must leave the net in training mode)."""
    loss_fn = DiceCELoss(sigmoid=True, smooth_nr=1e-5, smooth_dr=1e-5)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-5)
    net.train()
    clock = clock or TrainingClock(budget_s)
    steps, recent = 0, []
    while clock.running(steps) and (max_steps is None or steps < max_steps):
        image, targets = sampler.sample()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(image), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        steps += 1
        recent = [*recent[-19:], float(loss.detach())]
    net.eval()
    return {"steps": steps, "seconds": round(clock.elapsed(), 1), "final_loss": float(np.mean(recent))}
