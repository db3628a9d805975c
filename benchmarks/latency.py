"""Whole-CT latency and peak memory, side by side in one process: TextDiffSeg vs SegResNet vs pixel-space diffusion.

Run: ``python benchmarks/latency.py [--large] [--device cuda] [--json OUT]``.

Phases, each on the same phantom CT (256x256x128 at 1.5x1.5x2.5 mm; with ``--large`` also 512x512x300 at
0.8x0.8x1.0 mm), end to end from the HU volume to masks on the input grid:

- TextDiffSeg (the demo checkpoint, default DDIM steps) with 1 prompt and with 5 prompts;
- a MONAI SegResNet (init_filters 16, one sigmoid channel per phantom structure) single pass, sliding windows of
  96^3 at 1.5 mm (untrained: timing does not depend on the weights);
- a pixel-space conditional diffusion net (Diff-UNet style: the full-resolution masks are denoised, conditioned on
  the image), same DDIM step count, same windows as SegResNet. It is slow on CPU, so only ``--pixel-windows``
  windows are computed and the rest are extrapolated from their mean time (marked "extrapolated").

Peak RSS is measured per phase by a thread that samples the process RSS every 5 ms (the process is the same, so the
figure includes what earlier phases left resident; freed heap is handed back with ``malloc_trim`` before each phase).
Timings are medians over ``--repeats`` runs for TextDiffSeg and one run for the baselines.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import psutil
import torch
from monai.data import MetaTensor
from monai.data.utils import dense_patch_slices, get_valid_patch_size

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baselines import DenseSegmenter, PixelDiffusionNet, PixelDiffusionSegmenter, make_segresnet  # noqa: E402
from model_timing import phantom_ct  # noqa: E402

from textdiffseg.checkpoint import load_for_inference  # noqa: E402
from textdiffseg.config import preset_config  # noqa: E402
from textdiffseg.data.label_maps import PHANTOM_LATER_VALUES, PHANTOM_TARGETS  # noqa: E402
from textdiffseg.inference import Segmenter  # noqa: E402
from textdiffseg.networks.model import TextDiffSeg  # noqa: E402

DEMO_CKPT = Path(__file__).resolve().parents[1] / "apps/textdiffseg_app/model/pretrained_textdiffseg.pt"
PROMPTS_5 = ["liver", "spleen", "left kidney", "right kidney", "pancreas"]
# The baselines' output channels: the phantom's first label set, as README's latency tables were measured.
STRUCTURES = [name for name, values in PHANTOM_TARGETS.items() if not set(values) & set(PHANTOM_LATER_VALUES)]
GIB = 2**30
CTS = {"256x256x128": ((256, 256, 128), (1.5, 1.5, 2.5)), "512x512x300": ((512, 512, 300), (0.8, 0.8, 1.0))}


class PeakRSS:
    """Context manager: peak resident set size (bytes) of this process while the block runs, sampled by a thread."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.process = psutil.Process()
        self.start = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc), so each phase starts from a low RSS."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    with contextlib.suppress(OSError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def timed(fn: Callable[[], object], device: torch.device, repeats: int = 1) -> dict:
    """Run ``fn`` ``repeats`` times; median wall seconds, peak RSS (GiB) and, on CUDA, peak GPU memory (GiB)."""
    walls, peaks, starts = [], [], []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(repeats):
        release_memory()
        with PeakRSS() as rss:
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            walls.append(time.perf_counter() - start)
        peaks.append(rss.peak)
        starts.append(rss.start)
    print(f"  {[round(w, 2) for w in walls]} s, peak RSS {max(peaks) / GIB:.2f} GiB", file=sys.stderr, flush=True)
    row = {
        "wall_s": round(statistics.median(walls), 3),
        "wall_runs_s": [round(w, 3) for w in walls],
        "peak_rss_gib": round(max(peaks) / GIB, 3),
        "start_rss_gib": round(min(starts) / GIB, 3),
    }
    if device.type == "cuda":
        row["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated(device) / GIB, 3)
    return row


def window_count(image: MetaTensor, spacing: tuple[float, ...], roi: tuple[int, ...], overlap: float) -> int:
    """How many sliding windows MONAI runs on ``image`` resampled to ``spacing`` (same rounding as ``Spacing``)."""
    zooms = torch.sqrt((torch.as_tensor(image.affine, dtype=torch.float64)[:3, :3] ** 2).sum(0))
    shape = [max(int(round(float(n * z / s))), r) for n, z, s, r in zip(image.shape[1:], zooms, spacing, roi)]
    roi = get_valid_patch_size(shape, roi)
    interval = [max(int(r * (1 - overlap)), 1) for r in roi]
    return len(dense_patch_slices(shape, roi, interval))


def autocast(device: torch.device, bf16: bool):  # noqa: ANN201 - a context manager
    """bf16 autocast on the device when asked, else a no-op context."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def bench_ct(name: str, image: MetaTensor, nets: dict, a: argparse.Namespace, device: torch.device) -> dict:
    """All phases on one CT; returns the rows and the ratios."""
    rows: dict[str, dict] = {}
    textdiffseg: Segmenter = nets["textdiffseg"]
    with autocast(device, a.bf16):
        textdiffseg.predict(image, ["liver"])  # warm-up: text cache, allocator, kernels
        rows["textdiffseg_1"] = timed(lambda: textdiffseg.predict(image, ["liver"]), device, a.repeats)
        rows["textdiffseg_5"] = timed(lambda: textdiffseg.predict(image, PROMPTS_5), device, a.repeats)
        if "previous" in nets:  # the checkpoint the shipped one replaces, same CT, same process
            previous: Segmenter = nets["previous"]
            previous.predict(image, ["liver"])
            rows["previous_1"] = timed(lambda: previous.predict(image, ["liver"]), device, a.repeats)
            rows["previous_5"] = timed(lambda: previous.predict(image, PROMPTS_5), device, a.repeats)
        if "textdiffseg_default" in nets:
            default: Segmenter = nets["textdiffseg_default"]
            default.predict(image, ["liver"])
            rows["textdiffseg_default_1"] = timed(lambda: default.predict(image, ["liver"]), device, a.repeats)
        slowdown = {
            f"textdiffseg_{n}_over_previous_{n}": round(
                rows[f"textdiffseg_{n}"]["wall_s"] / rows[f"previous_{n}"]["wall_s"], 3
            )
            for n in (1, 5)
            if f"previous_{n}" in rows
        }
        if a.textdiffseg_only:
            return {"ct": name, "shape": list(image.shape[1:]), "rows": rows, "ratios": slowdown}
        segresnet: DenseSegmenter = nets["segresnet"]
        rows["segresnet"] = timed(lambda: segresnet.predict(image, ["liver"]), device)
        pixel: PixelDiffusionSegmenter = nets["pixel"]
        row = timed(lambda: pixel.predict(image, ["liver"]), device)
        computed, seen = len(pixel.window_seconds), pixel.windows_seen
        per_window = statistics.mean(pixel.window_seconds)
        row.update(
            windows=seen,
            windows_computed=computed,
            window_s=round(per_window, 3),
            extrapolated=computed < seen,
            wall_s=round(row["wall_s"] + per_window * (seen - computed), 2),
        )
        rows["pixel_diffusion"] = row
    tds_grid = (textdiffseg.config.spacing, textdiffseg.config.roi_size)
    for key in ("textdiffseg_1", "textdiffseg_5", "segresnet"):
        rows[key]["windows"] = window_count(image, *(tds_grid if "textdiffseg" in key else (a.spacing, a.roi)), 0.25)
    t1 = rows["textdiffseg_1"]["wall_s"]
    ratios = {
        "textdiffseg_1_over_segresnet": round(t1 / rows["segresnet"]["wall_s"], 3),
        "pixel_diffusion_over_textdiffseg_1": round(rows["pixel_diffusion"]["wall_s"] / t1, 1),
        "textdiffseg_5_over_1": round(rows["textdiffseg_5"]["wall_s"] / t1, 3),
        **slowdown,
    }
    return {"ct": name, "shape": list(image.shape[1:]), "rows": rows, "ratios": ratios}


LABELS = {
    "textdiffseg_1": "TextDiffSeg (--ckpt), 1 prompt",
    "textdiffseg_5": "TextDiffSeg (--ckpt), 5 prompts",
    "previous_1": "TextDiffSeg previous (--previous-ckpt), 1 prompt",
    "previous_5": "TextDiffSeg previous (--previous-ckpt), 5 prompts",
    "textdiffseg_default_1": "TextDiffSeg default preset (random weights), 1 prompt",
    "segresnet": "SegResNet single pass (11 labels)",
    "pixel_diffusion": "pixel-space diffusion (11 labels)",
}


def format_tables(results: list[dict], a: argparse.Namespace, steps: int) -> str:
    """Markdown: one table of phases per CT, then the target ratios."""
    lines = []
    for res in results:
        lines += [
            f"\nCT {res['ct']} (voxels {tuple(res['shape'])}):\n",
            "| method | working grid | windows | DDIM steps | wall (s) | peak RSS (GiB) |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for key, row in res["rows"].items():
            tds = key.startswith(("textdiffseg", "previous"))
            grid = f"{a.tds_spacing[0]:g} mm, roi {a.tds_roi}" if tds else f"{a.spacing[0]:g} mm, roi {a.roi}"
            if key == "textdiffseg_default_1":
                grid = f"{a.default_spacing[0]:g} mm, roi {a.default_roi}"
            wall = f"{row['wall_s']:.2f}"
            if row.get("extrapolated"):
                wall += f" (extrapolated from {row['windows_computed']} of {row['windows']} windows)"
            n_steps = "-" if key == "segresnet" else str(steps)
            windows = row.get("windows", "-")
            lines.append(f"| {LABELS[key]} | {grid} | {windows} | {n_steps} | {wall} | {row['peak_rss_gib']:.2f} |")
    lines += ["\n| target (CPU) | CT | measured | target | met |", "|---|---|---:|---:|---|"]
    for res in results:
        r = res["ratios"]
        for n in (1, 5):
            key = f"textdiffseg_{n}_over_previous_{n}"
            if key in r:
                met = "yes" if r[key] <= 2 else "no"
                lines.append(f"| TextDiffSeg / previous, {n} prompt(s) | {res['ct']} | {r[key]:.2f}x | <= 2x | {met} |")
        lines += [] if "textdiffseg_1_over_segresnet" not in r else [
            f"| TextDiffSeg 1 prompt / SegResNet | {res['ct']} | {r['textdiffseg_1_over_segresnet']:.2f}x | <= 1.5x "
            f"| {'yes' if r['textdiffseg_1_over_segresnet'] <= 1.5 else 'no'} |",
            f"| pixel diffusion / TextDiffSeg 1 prompt | {res['ct']} | {r['pixel_diffusion_over_textdiffseg_1']:.1f}x "
            f"| >= 10x | {'yes' if r['pixel_diffusion_over_textdiffseg_1'] >= 10 else 'no'} |",
            f"| TextDiffSeg 5 prompts / 1 prompt | {res['ct']} | {r['textdiffseg_5_over_1']:.2f}x | <= 2x "
            f"| {'yes' if r['textdiffseg_5_over_1'] <= 2 else 'no'} |",
        ]
        if res["ct"] == "512x512x300":
            peak = max(res["rows"][k]["peak_rss_gib"] for k in ("textdiffseg_1", "textdiffseg_5"))
            met = "yes" if peak < 6 else "no"
            lines.append(f"| TextDiffSeg peak RSS | {res['ct']} | {peak:.2f} GiB | < 6 GiB | {met} |")
    return "\n".join(lines)


def build_nets(a: argparse.Namespace, device: torch.device) -> tuple[dict, int]:
    """The segmenters of every phase (TextDiffSeg from the demo checkpoint; baselines with seeded random weights)."""
    model, encoder = load_for_inference(a.ckpt, device=device)
    steps = model.config.sampling_steps
    nets: dict = {"textdiffseg": Segmenter(model, encoder, device=device, sw_batch_size=a.sw_batch_size)}
    a.tds_spacing, a.tds_roi = model.config.spacing, model.config.roi_size
    if a.previous_ckpt:
        previous, previous_encoder = load_for_inference(a.previous_ckpt, device=device)
        if previous.config.sampling_steps != steps or previous.config.spacing != model.config.spacing:
            print("note: the previous checkpoint has another grid or step count", file=sys.stderr)
        nets["previous"] = Segmenter(previous, previous_encoder, device=device, sw_batch_size=a.sw_batch_size)
    if a.default_preset:
        config = replace(preset_config("default"), text_hidden_size=encoder.hidden_size)
        torch.manual_seed(0)
        nets["textdiffseg_default"] = Segmenter(TextDiffSeg(config), encoder, device=device)
        a.default_spacing, a.default_roi = config.spacing, config.roi_size
    torch.manual_seed(0)
    common = dict(device=device, channels_last=a.channels_last, sw_batch_size=a.sw_batch_size)
    nets["segresnet"] = DenseSegmenter(make_segresnet(len(STRUCTURES)), STRUCTURES, a.spacing, a.roi, **common)
    nets["pixel"] = PixelDiffusionSegmenter(
        PixelDiffusionNet(len(STRUCTURES)), STRUCTURES, a.spacing, a.roi, steps=steps,
        max_windows=a.pixel_windows, **common,
    )
    return nets, steps


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """CLI flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--large", action="store_true", help="also the 512x512x300 CT (adds several minutes on CPU)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (TF32 on; add --bf16 for bf16 autocast)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for every phase (default on with cuda)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each TextDiffSeg phase (median reported)")
    p.add_argument("--pixel-windows", type=int, default=2, help="windows the pixel-diffusion baseline computes")
    p.add_argument("--sw-batch-size", type=int, default=1, help="windows per network call (all methods)")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                   help="baselines in the default (channels-first) memory format")
    p.add_argument("--default-preset", action="store_true", help="also the default preset with random weights")
    p.add_argument("--textdiffseg-only", action="store_true", help="TextDiffSeg phases only (no baselines, no ratios)")
    p.add_argument("--only-large", action="store_true", help="the 512x512x300 CT only")
    p.add_argument("--ckpt", type=Path, default=DEMO_CKPT)
    p.add_argument("--previous-ckpt", type=Path, help="also time this checkpoint (the one --ckpt replaces): ratios")
    p.add_argument("--quick", action="store_true", help="smoke test: a 64x64x48 CT, 1 pixel-diffusion window")
    p.add_argument("--json", type=Path, help="also write the results here")
    a = p.parse_args(argv)
    a.spacing, a.roi = (1.5, 1.5, 1.5), (96, 96, 96)
    if a.quick:
        a.spacing, a.roi, a.pixel_windows, a.repeats = (4.0, 4.0, 4.0), (32, 32, 32), 1, 1
    return a


def main(argv: list[str] | None = None) -> int:
    """Print the tables and ratios (and write JSON)."""
    a = parse_args(argv)
    device = torch.device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        a.bf16 = True
    nets, steps = build_nets(a, device)
    cts = {"64x64x48": ((64, 64, 48), (4.0, 4.0, 4.0))} if a.quick else dict(CTS)
    if not a.large and not a.quick and not a.only_large:
        cts.pop("512x512x300")
    if a.only_large:
        cts.pop("256x256x128")
    results = []
    load_before = os.getloadavg()
    started = time.perf_counter()
    for name, (size, spacing) in cts.items():
        print(f"CT {name}", file=sys.stderr, flush=True)
        image = phantom_ct(size, spacing)
        results.append(bench_ct(name, image, nets, a, device))
        del image
    machine = {
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "bf16": a.bf16,
        "channels_last_baselines": a.channels_last,
        "sw_batch_size": a.sw_batch_size,
        "torch": torch.__version__,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(
        f"device {machine['device']}, {machine['cpu_cores']} CPU cores, torch threads {machine['torch_threads']}, "
        f"load average before {machine['loadavg_before']} after {machine['loadavg_after']}, "
        f"{machine['seconds']} s in all"
    )
    print(format_tables(results, a, steps))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"machine": machine, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
