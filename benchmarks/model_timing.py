"""Parameter counts and CPU time of one denoiser step and of one whole-CT infer, per model preset.

Run: ``python benchmarks/model_timing.py [--presets small default] [--size 256 256 128]``. Timing does not depend
on the weights, so untrained models are timed; the CT is a phantom padded/cropped to ``--size`` voxels.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np
import torch
from monai.data import MetaTensor

from textdiffseg.config import preset_config
from textdiffseg.data.phantom import PhantomConfig, generate_case
from textdiffseg.inference import Segmenter
from textdiffseg.networks.model import TextDiffSeg
from textdiffseg.text.encoder import TextEncoder


def phantom_ct(size: tuple[int, int, int], spacing: tuple[float, float, float]) -> MetaTensor:
    """A phantom CT padded with air / cropped to exactly ``size`` voxels."""
    cfg = PhantomConfig(spacing=spacing, max_matrix=max(512, size[0], size[1]), max_slices=max(200, size[2]))
    case = generate_case(seed=0, index=0, cfg=cfg)
    out = np.full(size, -1000, np.int16)
    src = tuple(slice(max(0, (s - t) // 2), max(0, (s - t) // 2) + min(s, t)) for s, t in zip(case.image.shape, size))
    dst = tuple(slice(max(0, (t - s) // 2), max(0, (t - s) // 2) + min(s, t)) for s, t in zip(case.image.shape, size))
    out[dst] = case.image[src]
    return MetaTensor(torch.from_numpy(out.astype(np.float32))[None], affine=torch.as_tensor(case.affine))


def time_preset(name: str, encoder: TextEncoder, image: MetaTensor, repeats: int) -> dict:
    """Parameter counts, one denoiser call (1 prompt, one window) and one whole-CT infer (1 prompt)."""
    config = replace(preset_config(name), text_hidden_size=encoder.hidden_size)
    torch.manual_seed(0)
    model = TextDiffSeg(config).eval()
    f = config.downsample
    latent = torch.randn(1, model.latent_channels, *(s // f for s in config.roi_size))
    tokens, mask = encoder.encode(["liver"])
    with torch.inference_mode():
        fused = model.condition(torch.rand(1, 1, *config.roi_size), tokens, mask).fused
        model.denoise(latent, torch.tensor([500]), fused)
        start = time.perf_counter()
        for _ in range(repeats):
            model.denoise(latent, torch.tensor([500]), fused)
        step_s = (time.perf_counter() - start) / repeats
    segmenter = Segmenter(model, encoder)
    segmenter.predict(image, ["liver"])  # warm-up (text cache, allocator)
    start = time.perf_counter()
    segmenter.predict(image, ["liver"])
    infer_s = time.perf_counter() - start
    by_module = {n: sum(p.numel() for p in m.parameters()) for n, m in model.named_children()}
    return {
        "preset": name, "parameters": sum(p.numel() for p in model.parameters()),
        "parameters_by_module": by_module, "spacing_mm": config.spacing, "roi": config.roi_size,
        "ddim_steps": config.sampling_steps, "denoiser_step_s": round(step_s, 4), "whole_ct_infer_s": round(infer_s, 2),
    }


def main() -> None:
    """Print a markdown table and the JSON rows."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presets", nargs="+", default=["small", "default"])
    p.add_argument("--size", nargs=3, type=int, default=[256, 256, 128])
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    encoder = TextEncoder("default")
    image = phantom_ct(tuple(a.size), (1.5, 1.5, 2.5))
    rows = [time_preset(n, encoder, image, a.repeats) for n in a.presets]
    print(f"CPU threads: {torch.get_num_threads()}; CT {tuple(a.size)} at (1.5, 1.5, 2.5) mm; 1 prompt, ensemble 1")
    print("| preset | parameters | denoiser step (s) | whole-CT infer (s) |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['preset']} | {r['parameters']:,} | {r['denoiser_step_s']:.4f} | {r['whole_ct_infer_s']:.2f} |")
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
