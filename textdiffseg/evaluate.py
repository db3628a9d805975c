"""Evaluate a checkpoint: ``python -m textdiffseg.evaluate --data DIR --ckpt F [--json OUT]``.

Every structure the dataset annotates is prompted on every case, on the case's own voxel grid. Where the structure is
present, Dice and HD95 (mm, MONAI's metrics) are recorded; where it is absent the prompt should give an empty mask,
and the share of such empty answers is reported as ``absent_empty``. Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from monai.data.utils import affine_to_spacing
from monai.metrics import compute_dice, compute_hausdorff_distance
from monai.transforms import EnsureChannelFirst, LoadImage

from textdiffseg.checkpoint import CheckpointError, load_fine_stage, load_for_inference
from textdiffseg.data.folders import DatasetFolderError, LabelledCase, load_folder
from textdiffseg.inference import Segmenter
from textdiffseg.text.encoder import TextEncoderError

EMPTY_VOXELS = 10  # a predicted mask with fewer voxels counts as "empty" for absent structures


@dataclass
class PromptScores:
    """Scores of one prompt over the cases."""

    dice: list[float] = field(default_factory=list)
    hd95: list[float] = field(default_factory=list)
    absent_empty: list[bool] = field(default_factory=list)

    def summary(self) -> dict[str, float | int | None]:
        """Means (NaN-free: HD95 is averaged over cases where both masks are non-empty)."""
        finite = [h for h in self.hd95 if math.isfinite(h)]
        return {
            "cases": len(self.dice),
            "dice": float(np.mean(self.dice)) if self.dice else None,
            "hd95_mm": float(np.mean(finite)) if finite else None,
            "absent_cases": len(self.absent_empty),
            "absent_empty": float(np.mean(self.absent_empty)) if self.absent_empty else None,
        }


def dice_and_hd95(pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, ...]) -> tuple[float, float]:
    """Dice and 95th-percentile Hausdorff distance (mm) of two binary masks; HD95 is inf if either is empty."""
    p = torch.as_tensor(pred, dtype=torch.float32)[None, None]
    t = torch.as_tensor(truth, dtype=torch.float32)[None, None]
    dice = float(compute_dice(p, t, include_background=True, ignore_empty=False)[0, 0])
    if not pred.any() or not truth.any():
        return dice, math.inf
    hd = float(compute_hausdorff_distance(p, t, include_background=True, percentile=95, spacing=list(spacing))[0, 0])
    return dice, hd


def evaluate_cases(segmenter: Segmenter, cases: list[LabelledCase]) -> dict[str, PromptScores]:
    """Prompt every annotated structure on every case; returns scores per prompt."""
    loader = LoadImage(image_only=True)
    channel_first = EnsureChannelFirst()
    scores: dict[str, PromptScores] = {}
    for case in cases:
        image = channel_first(loader(str(case.image)))
        label = np.asarray(loader(str(case.label))).round().astype(np.int32)
        spacing = tuple(float(s) for s in affine_to_spacing(np.asarray(image.affine, np.float64)))
        names = sorted(case.targets)
        prediction = segmenter.predict(image, names)
        for i, name in enumerate(names):
            truth = np.isin(label, case.targets[name])
            pred = prediction.probability[i] > 0.5
            entry = scores.setdefault(name, PromptScores())
            if truth.any():
                dice, hd = dice_and_hd95(pred, truth, spacing)
                entry.dice.append(dice)
                entry.hd95.append(hd)
            else:
                entry.absent_empty.append(int(pred.sum()) < EMPTY_VOXELS)
    return scores


def score_cases(segmenter: Segmenter, cases: list[LabelledCase]) -> dict[str, dict]:
    """:func:`evaluate_cases` summarised per prompt, sorted by prompt (what ``--json`` writes and tables show)."""
    return {name: s.summary() for name, s in sorted(evaluate_cases(segmenter, cases).items())}


def format_table(summary: dict[str, dict]) -> str:
    """Markdown table: one row per prompt, then the mean over prompts."""

    def fmt(value: float | None, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = ["| prompt | cases | Dice | HD95 (mm) | absent -> empty |", "|---|---:|---:|---:|---:|"]
    for name, s in summary.items():
        absent = "-" if not s["absent_cases"] else f"{s['absent_empty']:.2f} of {s['absent_cases']}"
        lines.append(f"| {name} | {s['cases']} | {fmt(s['dice'])} | {fmt(s['hd95_mm'], 1)} | {absent} |")
    dices = [s["dice"] for s in summary.values() if s["dice"] is not None]
    hds = [s["hd95_mm"] for s in summary.values() if s["hd95_mm"] is not None]
    lines.append(
        f"| **mean** | | {fmt(float(np.mean(dices)) if dices else None)} | "
        f"{fmt(float(np.mean(hds)) if hds else None, 1)} | |"
    )
    return "\n".join(lines)


def run_evaluation(
    data: str | Path,
    ckpt: str | Path,
    text_encoder: str | None = None,
    steps: int | None = None,
    ensemble: int = 1,
    limit: int | None = None,
    device: str = "cpu",
    fine_pass: bool = True,
) -> dict[str, dict]:
    """Load a checkpoint (and the text encoder it records) and evaluate it on a folder; returns the summary.

    ``fine_pass``: zoom in with the checkpoint's fine stage, if it holds one (``textdiffseg.zoom_in``)."""
    model, encoder = load_for_inference(ckpt, text_encoder, device)  # refuses a mismatched encoder
    fine_stage = load_fine_stage(ckpt, device)
    segmenter = Segmenter(
        model, encoder, steps=steps, ensemble=ensemble, device=device, fine_stage=fine_stage, fine_pass=fine_pass
    )
    cases = load_folder(data)[:limit] if limit else load_folder(data)
    return score_cases(segmenter, cases)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(prog="python -m textdiffseg.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="MSD/phantom folder (dataset.json) or KiTS folder")
    p.add_argument("--ckpt", required=True, help="checkpoint (model.pt) written by textdiffseg.train")
    p.add_argument("--text-encoder", help="override where the recorded text encoder is loaded from")
    p.add_argument("--steps", type=int, help="DDIM steps (default: the model's)")
    p.add_argument("--ensemble", type=int, default=1, help="diffusion samples per prompt (default 1)")
    p.add_argument("--limit", type=int, help="evaluate only the first N cases")
    p.add_argument("--json", help="also write the summary to this file")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-fine-pass", action="store_true", help="coarse pass only, even if the checkpoint zooms in")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        summary = run_evaluation(
            a.data, a.ckpt, a.text_encoder, a.steps, a.ensemble, a.limit, a.device, fine_pass=not a.no_fine_pass
        )
    except (DatasetFolderError, TextEncoderError, CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_table(summary))
    if a.json:
        Path(a.json).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
