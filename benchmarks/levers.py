"""Speed levers of TextDiffSeg whole-CT inference on CPU, each timed against the default in one process.

Run: ``python benchmarks/levers.py [--size 256 256 128] [--repeats 2]``. On the demo checkpoint and a phantom CT:

- resampling the output back onto the input grid: MONAI ``ResampleToMatch`` vs ``inference.to_input_grid``;
- the whole ``Segmenter.predict`` (1 prompt) with 1 vs 2 torch threads, ``sw_batch_size`` 1 vs 2, and the model in
  channels-last-3D memory format.

Each figure is the minimum over ``--repeats`` runs (the least disturbed by other jobs on a shared machine).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Orientation, ResampleToMatch, Spacing

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency import DEMO_CKPT, PeakRSS, release_memory  # noqa: E402
from model_timing import phantom_ct  # noqa: E402

from textdiffseg.checkpoint import load_for_inference  # noqa: E402
from textdiffseg.inference import Segmenter, to_input_grid  # noqa: E402


def best_of(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Minimum wall seconds over ``repeats`` runs and the peak RSS (GiB) seen."""
    walls, peak = [], 0
    for _ in range(repeats):
        release_memory()
        with PeakRSS() as rss:
            start = time.perf_counter()
            fn()
            walls.append(time.perf_counter() - start)
        peak = max(peak, rss.peak)
    return round(min(walls), 3), round(peak / 2**30, 3)


def main(argv: list[str] | None = None) -> int:
    """Print a markdown table of lever vs baseline timings (and JSON)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", nargs=3, type=int, default=[256, 256, 128])
    p.add_argument("--spacing", nargs=3, type=float, default=[1.5, 1.5, 2.5])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    threads = torch.get_num_threads()
    image = phantom_ct(tuple(a.size), tuple(a.spacing))
    model, encoder = load_for_inference(DEMO_CKPT)
    segmenter = Segmenter(model, encoder)
    resampled = Spacing(pixdim=model.config.spacing, mode="bilinear")(Orientation(axcodes="RAS")(image.float()))
    one_map = torch.rand(1, *resampled.shape[1:])
    monai_resample = ResampleToMatch(mode="bilinear", padding_mode="zeros")
    rows: list[tuple[str, str, float, float, float, float]] = []

    def compare(lever: str, what: str, base: Callable[[], object], new: Callable[[], object]) -> None:
        b, n = best_of(base, a.repeats), best_of(new, a.repeats)
        rows.append((lever, what, b[0], n[0], b[1], n[1]))
        print(f"{lever}: {b} -> {n}", file=sys.stderr, flush=True)

    load_before = os.getloadavg()
    compare(
        "separable resampling back (1 map)", "MONAI ResampleToMatch -> to_input_grid",
        lambda: monai_resample(MetaTensor(one_map, affine=resampled.affine), img_dst=image).as_tensor().numpy(),
        lambda: to_input_grid(one_map, resampled.affine, image),
    )
    segmenter.predict(image, ["liver"])  # warm-up

    def predict() -> object:
        return segmenter.predict(image, ["liver"])

    def one_thread() -> object:
        torch.set_num_threads(1)
        try:
            return predict()
        finally:
            torch.set_num_threads(threads)

    compare("torch threads", f"{threads} -> 1", predict, one_thread)
    batched = Segmenter(model, encoder, sw_batch_size=2)
    compare("sliding-window batch", "1 -> 2 windows per call", predict, lambda: batched.predict(image, ["liver"]))
    channels_last = Segmenter(copy.deepcopy(model).to(memory_format=torch.channels_last_3d), encoder)
    compare("channels-last 3D model", "off -> on", predict, lambda: channels_last.predict(image, ["liver"]))
    print(f"CT {tuple(a.size)} at {tuple(a.spacing)} mm; demo checkpoint; torch threads {threads}; load average "
          f"before {[round(x, 2) for x in load_before]} after {[round(x, 2) for x in os.getloadavg()]}; "
          f"best of {a.repeats}")
    print("| lever | change | before (s) | after (s) | speed-up | peak RSS before / after (GiB) |")
    print("|---|---|---:|---:|---:|---:|")
    for lever, what, b, n, rb, rn in rows:
        print(f"| {lever} | {what} | {b:.2f} | {n:.2f} | {b / n:.2f}x | {rb:.2f} / {rn:.2f} |")
    if a.json:
        keys = ("lever", "change", "before_s", "after_s", "rss_before_gib", "rss_after_gib")
        a.json.write_text(json.dumps([dict(zip(keys, r)) for r in rows], indent=1))
    return 0 if np.isfinite([r[3] for r in rows]).all() else 1


if __name__ == "__main__":
    raise SystemExit(main())
