"""Coarse pass alone vs coarse + fine pass (zoom-in), on the same cases and checkpoint, in one process.

``python benchmarks/zoom_in.py --ckpt BOTH.pt --data DIR [--data DIR2] [--limit N] [--out FOLDER]``

``--ckpt`` must hold a fine stage (``python -m textdiffseg.fine_stage``). For every folder, each case is scored as
``textdiffseg.evaluate`` scores it (every annotated structure prompted; Dice and HD95 where present, empty answers
where absent) twice: with ``fine_pass=False`` and with the fine pass. Then one prompt (``--timing-prompt``, default
``pancreas``) on the first case is timed both ways, alternating, ``--repeats`` times each: the ratio of medians is the
fine pass's cost. Prints markdown tables and writes ``zoom_in.json`` / ``zoom_in.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from monai.transforms import EnsureChannelFirst, LoadImage

from textdiffseg.checkpoint import load_fine_stage, load_for_inference
from textdiffseg.data.folders import load_folder
from textdiffseg.evaluate import score_cases
from textdiffseg.inference import Segmenter


def comparison_table(coarse: dict[str, dict], zoomed: dict[str, dict]) -> str:
    """Markdown: per structure, Dice / HD95 / absent-empty of the coarse pass alone and with the fine pass."""

    def fmt(value: float | None, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [
        "| structure | cases | Dice coarse | Dice zoom-in | HD95 coarse (mm) | HD95 zoom-in (mm) "
        "| absent empty coarse | absent empty zoom-in |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in sorted(coarse):
        c, z = coarse[name], zoomed[name]
        lines.append(
            f"| {name} | {c['cases']} | {fmt(c['dice'])} | {fmt(z['dice'])} | {fmt(c['hd95_mm'], 1)} | "
            f"{fmt(z['hd95_mm'], 1)} | {fmt(c['absent_empty'], 2)} | {fmt(z['absent_empty'], 2)} |"
        )
    return "\n".join(lines)


def time_one_prompt(coarse: Segmenter, zoomed: Segmenter, image: object, prompt: str, repeats: int) -> dict:
    """Median seconds of one prompt, coarse alone and with the fine pass, alternating in this process after one
    untimed warm-up call."""
    seconds: dict[str, list[float]] = {"coarse": [], "zoom_in": []}
    passes = None
    coarse.predict(image, [prompt])  # warm-up: the first call of a process pays for allocations
    for _ in range(repeats):
        for name, segmenter in (("coarse", coarse), ("zoom_in", zoomed)):
            start = time.perf_counter()
            prediction = segmenter.predict(image, [prompt])
            seconds[name].append(time.perf_counter() - start)
            passes = prediction.passes if name == "zoom_in" else passes
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    return {
        "prompt": prompt,
        "repeats": repeats,
        "median_s": medians,
        "runs_s": seconds,
        "ratio": medians["zoom_in"] / medians["coarse"],
        "passes": passes,
    }


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", required=True, type=Path)
    p.add_argument("--data", required=True, action="append", type=Path, help="case folder (repeatable)")
    p.add_argument("--limit", type=int, help="first N cases of each folder")
    p.add_argument("--timing-prompt", default="pancreas")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("runs/zoom_in"))
    p.add_argument("--timing-only", action="store_true", help="skip the scores, time the one prompt only")
    a = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, encoder = load_for_inference(a.ckpt)
    fine_stage = load_fine_stage(a.ckpt)
    if fine_stage is None:
        print(f"error: {a.ckpt} holds no fine stage (python -m textdiffseg.fine_stage joins one)", file=sys.stderr)
        return 2
    coarse = Segmenter(model, encoder, fine_stage=fine_stage, fine_pass=False)
    zoomed = Segmenter(model, encoder, fine_stage=fine_stage)
    report: dict = {"checkpoint": str(a.ckpt), "folders": {}}
    tables = []
    for folder in [] if a.timing_only else a.data:
        cases = load_folder(folder)[: a.limit] if a.limit else load_folder(folder)
        start = time.perf_counter()
        scores = {"coarse": score_cases(coarse, cases), "zoom_in": score_cases(zoomed, cases)}
        report["folders"][str(folder)] = {**scores, "cases": len(cases), "seconds": time.perf_counter() - start}
        tables.append(f"### {folder} ({len(cases)} cases)\n\n" + comparison_table(scores["coarse"], scores["zoom_in"]))
        print(tables[-1], flush=True)
    first = load_folder(a.data[0])[0]
    image = EnsureChannelFirst()(LoadImage(image_only=True)(str(first.image)))
    timing = time_one_prompt(coarse, zoomed, image, a.timing_prompt, a.repeats)
    report["timing"] = {
        **timing,
        "case": first.case_id,
        "shape": list(image.shape[1:]),
        "threads": torch.get_num_threads(),
    }
    line = (
        f"one prompt ({a.timing_prompt!r}, {first.case_id}, {tuple(image.shape[1:])}): coarse "
        f"{timing['median_s']['coarse']:.1f} s, with the fine pass {timing['median_s']['zoom_in']:.1f} s "
        f"(x{timing['ratio']:.2f}; median of {a.repeats}, alternating, one process)"
    )
    print(line)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "zoom_in.json").write_text(json.dumps(report, indent=1))
    (a.out / "zoom_in.md").write_text("\n\n".join(tables) + f"\n\n{line}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
