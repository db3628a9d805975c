"""Dice after 0, 1, 3 and 5 simulated clicks per structure: ``python benchmarks/clicks.py --ckpt CKPT --data DIR``.

For every case of ``--data`` (an MSD/phantom folder or a KiTS folder, as ``textdiffseg.evaluate`` reads them) and
every structure it contains, the structure is prompted by its name (text only, click 0), then clicks are added one
at a time as an annotator would: each at the centre of the largest error component of the CURRENT mask against the
truth (positive in a missed region, negative in a wrongly included one; ``textdiffseg.click_simulation``), the mask
is predicted again with all clicks so far, and Dice is recorded after 1, 3 and 5 clicks. The clicks go through the
served path: the click edits (``textdiffseg.click_edit``) always, and the model's click branch when the checkpoint
has one. ``--no-edits`` measures the click branch alone (a checkpoint without one is then refused). Prints a
markdown table and writes JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from monai.transforms import EnsureChannelFirst, LoadImage

from textdiffseg.checkpoint import load_for_inference
from textdiffseg.click_edit import DEFAULT_CLICK_EDITS
from textdiffseg.click_simulation import next_click
from textdiffseg.clicks import Clicks
from textdiffseg.data.folders import load_folder
from textdiffseg.inference import Segmenter
from textdiffseg.model_scores import dice

REPORTED = (0, 1, 3, 5)


def click_rounds(
    segmenter: Segmenter, image: object, prompt: str, truth: np.ndarray, rounds: int
) -> Iterator[tuple[Clicks, np.ndarray]]:
    """The clicks so far and the mask they give, after 0..``rounds`` clicks: each click from the errors of the mask
    the previous ones gave (a perfect mask gets no more clicks and stays)."""
    clicks = Clicks((), ())
    mask = segmenter.predict(image, [prompt]).probability[0] > 0.5
    yield clicks, mask
    for _ in range(rounds):
        click = next_click(mask, truth)
        if len(click):
            clicks = clicks + click
            mask = segmenter.predict(image, [prompt], clicks=[clicks]).probability[0] > 0.5
        yield clicks, mask


def click_curve(segmenter: Segmenter, image: object, prompt: str, truth: np.ndarray, rounds: int) -> dict[int, float]:
    """Dice after 0..``rounds`` clicks (:func:`click_rounds`)."""
    return {n: dice(mask, truth) for n, (_, mask) in enumerate(click_rounds(segmenter, image, prompt, truth, rounds))}


def run(ckpt: Path, data: Path, cases: int | None, structures: list[str], rounds: int, edits: bool = True) -> dict:
    """Every structure on every case: the Dice curves, their means per structure and overall, and timings."""
    model, encoder = load_for_inference(ckpt)
    if not edits and not model.takes_clicks:
        raise SystemExit(f"{ckpt} has no click branch: with --no-edits its clicks would be refused")
    segmenter = Segmenter(model, encoder, click_edits=DEFAULT_CLICK_EDITS if edits else None)
    loader, channel_first = LoadImage(image_only=True), EnsureChannelFirst()
    per: dict[str, list[dict[int, float]]] = {}
    seconds: list[float] = []
    for case in load_folder(data)[:cases]:
        image = channel_first(loader(str(case.image)))
        label = np.asarray(loader(str(case.label))).round().astype(np.int32)
        for name in sorted(case.targets):
            truth = np.isin(label, case.targets[name])
            if (structures and name not in structures) or not truth.any():
                continue
            start = time.perf_counter()
            with torch.inference_mode():
                curve = click_curve(segmenter, image, name, truth, rounds)
            seconds.append((time.perf_counter() - start) / (rounds + 1))
            per.setdefault(name, []).append(curve)
            print(f"{case.case_id} {name}: " + " ".join(f"{k}:{v:.3f}" for k, v in curve.items()), file=sys.stderr)
    steps = [n for n in REPORTED if n <= rounds]
    table = {name: {n: float(np.mean([c[n] for c in curves])) for n in steps} for name, curves in per.items()}
    overall = {n: float(np.mean([row[n] for row in table.values()])) for n in steps} if table else {}
    return {
        "ckpt": str(ckpt),
        "data": str(data),
        "click_edits": edits,
        "click_branch": model.takes_clicks,
        "structures": {name: {"cases": len(per[name]), "dice": row} for name, row in table.items()},
        "mean": overall,
        "seconds_per_prediction": float(np.mean(seconds)) if seconds else None,
    }


def markdown(result: dict) -> str:
    """The result as a markdown table: one row per structure, Dice after each click count, and the gain."""
    steps = list(result["mean"])
    head = "| structure | cases | " + " | ".join(f"{n} clicks" for n in steps) + " | gain |"
    lines = [head, "|" + "---|" * (len(steps) + 3)]
    rows = [(name, s["cases"], s["dice"]) for name, s in result["structures"].items()]
    rows.append(("**mean**", "", result["mean"]))
    for name, count, row in rows:
        values = [row[n] if n in row else row[str(n)] for n in steps]
        cells = " | ".join(f"{v:.3f}" for v in values)
        lines.append(f"| {name} | {count} | {cells} | {values[-1] - values[0]:+.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI: prints the table, writes the JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", required=True, type=Path, help="a checkpoint (the served one, for instance)")
    p.add_argument("--data", required=True, type=Path, help="MSD/phantom or KiTS folder with labels")
    p.add_argument("--cases", type=int, help="only the first N cases")
    p.add_argument("--structure", action="append", default=[], help="only this structure (repeatable)")
    p.add_argument("--clicks", type=int, default=5, help="clicks per structure (default 5)")
    p.add_argument("--no-edits", action="store_true", help="the click branch alone, without the click edits")
    p.add_argument("--json", type=Path, help="write the result here")
    a = p.parse_args(argv)
    result = run(a.ckpt, a.data, a.cases, a.structure, max(1, a.clicks), edits=not a.no_edits)
    print(markdown(result))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
