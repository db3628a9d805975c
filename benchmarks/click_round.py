"""A click round's cost: the same request with and without clicks, timed side by side in one process.

``python benchmarks/click_round.py [--ckpt CKPT] [--shape 256 256 128] [--prompt spleen] [--clicks 3]``

The CT is the real abdomen (``ts_abdomen`` of ``datasets/realct``) resampled to ``--shape`` over the same field of
view (256x256x128: 1.4 x 1.2 x 2.6 mm). The clicks are what an annotator gives after the text-only mask: each at the
centre of the largest error component against the label (``textdiffseg.click_simulation``). Each request is timed
``--repeats`` times, alternating text-only and clicked after one untimed warm-up; the medians, the click round's
extra cost as a ratio, and the click edits alone (``textdiffseg.click_edit``) are printed. A click round is what an
OHIF Point Prompts "Run" or a Slicer control-point update costs the server, without HTTP and file transfer.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from clicks import click_rounds  # benchmarks/clicks.py (this script's folder is on sys.path)
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.transforms import EnsureChannelFirst, LoadImage, Resize

from textdiffseg.checkpoint import load_for_inference
from textdiffseg.click_edit import apply_click_edits
from textdiffseg.data.folders import load_folder
from textdiffseg.inference import Segmenter
from textdiffseg.model_scores import dice

SHIPPED = Path("apps/textdiffseg_app/model/pretrained_textdiffseg.pt")


def resized_case(data: Path, case_id: str, prompt: str, shape: tuple[int, int, int]) -> tuple[MetaTensor, np.ndarray]:
    """The case's CT (channel first, HU) and the prompt's truth, resampled to ``shape`` over the same field of view."""
    case = next(c for c in load_folder(data) if c.case_id == case_id)
    loader, channel_first = LoadImage(image_only=True), EnsureChannelFirst()
    image = channel_first(loader(str(case.image)))
    label = np.isin(np.asarray(loader(str(case.label))).round(), case.targets[prompt])
    old = np.asarray(image.shape[1:], np.float64)
    affine = np.asarray(image.affine, np.float64).copy()
    affine[:3, :3] = affine[:3, :3] * (old / np.asarray(shape))  # same field of view, finer voxels
    resized = Resize(shape, mode="trilinear")(image.as_tensor())
    pixels = resized.as_tensor() if isinstance(resized, MetaTensor) else resized
    truth = Resize(shape, mode="nearest")(torch.from_numpy(label[None].astype(np.float32)))[0].numpy() > 0.5
    return MetaTensor(pixels, affine=torch.from_numpy(affine)), truth


def seconds(call: Callable[[], object]) -> float:
    """Wall seconds of ``call()``."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """CLI: prints a markdown table; ``--json`` also writes the figures."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", type=Path, default=SHIPPED)
    p.add_argument("--data", type=Path, default=Path("datasets/realct"))
    p.add_argument("--case", default="ts_abdomen")
    p.add_argument("--prompt", default="spleen")
    p.add_argument("--shape", type=int, nargs=3, default=(256, 256, 128))
    p.add_argument("--clicks", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    image, truth = resized_case(a.data, a.case, a.prompt, tuple(a.shape))
    model, encoder = load_for_inference(a.ckpt)
    segmenter = Segmenter(model, encoder)
    with torch.inference_mode():
        *_, (clicks, _) = click_rounds(segmenter, image, a.prompt, truth, a.clicks)
        text_only = segmenter.predict(image, [a.prompt])
        clicked = segmenter.predict(image, [a.prompt], clicks=[clicks])
        spacing = affine_to_spacing(np.asarray(image.affine, np.float64))
        hu = image[0].numpy()
        timings = {"text": [], "clicked": [], "edits": []}
        text_request = partial(segmenter.predict, image, [a.prompt])
        click_request = partial(segmenter.predict, image, [a.prompt], clicks=[clicks])
        for _ in range(a.repeats):  # alternating, so load drifts hit both alike
            timings["text"].append(seconds(text_request))
            timings["clicked"].append(seconds(click_request))
            edits = partial(apply_click_edits, text_only.probability[0].copy(), hu, clicks, spacing)
            timings["edits"].append(seconds(edits))
    medians = {k: statistics.median(v) for k, v in timings.items()}
    result = {
        "shape": list(a.shape),
        "spacing_mm": [round(float(s), 3) for s in spacing],
        "prompt": a.prompt,
        "clicks": len(clicks),
        "click_branch": model.takes_clicks,
        "dice": {
            "text": dice(text_only.probability[0] > 0.5, truth),
            "clicked": dice(clicked.probability[0] > 0.5, truth),
        },
        "seconds": medians,
        "clicked_over_text": medians["clicked"] / medians["text"],
        "threads": torch.get_num_threads(),
    }
    print(
        f"{a.case} resampled to {a.shape} ({result['spacing_mm']} mm), '{a.prompt}', {len(clicks)} clicks, "
        f"{a.repeats} alternating repeats, {result['threads']} torch threads"
    )
    print("| request | median s | Dice |\n|---|---:|---:|")
    print(f"| text only | {medians['text']:.2f} | {result['dice']['text']:.3f} |")
    print(
        f"| text + {len(clicks)} clicks (a click round) | {medians['clicked']:.2f} | {result['dice']['clicked']:.3f} |"
    )
    print(f"| the click edits alone | {medians['edits']:.3f} | |")
    print(f"click round / text only: {result['clicked_over_text']:.2f}x")
    if a.json:
        a.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
