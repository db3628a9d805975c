"""Accuracy at equal training time: TextDiffSeg, its three ablations and a MONAI SegResNet, on held-out phantoms.

Run: ``python benchmarks/accuracy.py [--budget-s 150] [--json OUT]`` (45 minutes on 2 heavily shared CPU cores with
the default budget; ``--budget-s 1800`` is the longer setting: about 2.5 hours plus evaluation).

Every method trains from scratch on the same phantom training cases (seed 100), at the same working spacing and
patch size (the TextDiffSeg preset's), one patch per optimisation step, for the same wall-clock budget; then
``textdiffseg.evaluate`` scores each one on held-out phantom cases (seed 200): Dice and HD95 (mm) per structure
where it is present, on the cases' own voxel grid. SegResNet has one sigmoid output channel per structure name
(Dice + BCE, MONAI ``DiceCELoss``); TextDiffSeg gets each structure's name as its prompt.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baselines import DenseSegmenter, MultiLabelPatchSampler, make_segresnet, train_segresnet  # noqa: E402

from textdiffseg.config import ModelConfig  # noqa: E402
from textdiffseg.data.folders import LabelledCase, load_folder  # noqa: E402
from textdiffseg.data.phantom import PhantomConfig, write_dataset  # noqa: E402
from textdiffseg.data.vocabulary import PromptVocabulary  # noqa: E402
from textdiffseg.evaluate import evaluate_cases  # noqa: E402
from textdiffseg.inference import Segmenter  # noqa: E402
from textdiffseg.networks.model import TextDiffSeg  # noqa: E402
from textdiffseg.text.encoder import TextEncoder  # noqa: E402
from textdiffseg.train_data import PromptedPatchSampler, prepare_cases  # noqa: E402
from textdiffseg.train_loop import TrainOptions, build_config  # noqa: E402
from textdiffseg.train_step import Trainer, mean_terms  # noqa: E402

METHODS = {
    "textdiffseg": (),
    "no-text-fusion": ("no-text-fusion",),
    "no-image-encoder": ("no-image-encoder",),
    "no-label-encoder": ("no-label-encoder",),
}


def phantom_folder(out: Path, n: int, seed: int, spacing: float) -> list[LabelledCase]:
    """Write (once) and load ``n`` phantom cases of ``seed`` at an isotropic ``spacing``."""
    if not (out / "dataset.json").is_file():
        write_dataset(out, n=n, seed=seed, cfg=PhantomConfig(spacing=(spacing,) * 3))
    return load_folder(out)


def train_textdiffseg(
    config: ModelConfig, encoder: TextEncoder, train_cases: list[LabelledCase], budget_s: float, lr: float, seed: int
) -> tuple[TextDiffSeg, dict]:
    """The ``textdiffseg.train_loop`` components (``Trainer``, ``PromptedPatchSampler``) for a wall-clock budget."""
    torch.manual_seed(seed)
    model = TextDiffSeg(config)
    trainer = Trainer(model, encoder, lr=lr, seed=seed)
    sampler = PromptedPatchSampler(prepare_cases(train_cases, config), PromptVocabulary.load(None), config.roi_size,
                                   seed=seed)
    start, window = time.perf_counter(), []
    while time.perf_counter() - start < budget_s:
        window = [*window[-19:], trainer.step([sampler.sample()])]
    model.eval()
    info = {"steps": trainer.state.step, "seconds": round(time.perf_counter() - start, 1),
            "final_loss": mean_terms(window).get("loss")}
    return model, info


def run(a: argparse.Namespace) -> dict:
    """Train and evaluate every method; returns the JSON-able results."""
    tag = f"{a.phantom_spacing:g}mm"
    train_cases = phantom_folder(a.data / f"train_s100_n{a.train_cases}_{tag}", a.train_cases, 100, a.phantom_spacing)
    test_cases = phantom_folder(a.data / f"test_s200_n{a.test_cases}_{tag}", a.test_cases, 200, a.phantom_spacing)
    encoder = TextEncoder(a.text_encoder)
    results: dict[str, dict] = {}
    for name, ablations in METHODS.items():
        config = build_config(TrainOptions(data=a.data, out=a.data, preset=a.preset, ablations=ablations), encoder)
        model, info = train_textdiffseg(config, encoder, train_cases, a.budget_s, a.lr, a.seed)
        start = time.perf_counter()
        scores = evaluate_cases(Segmenter(model, encoder), test_cases)
        info["eval_seconds"] = round(time.perf_counter() - start, 1)
        results[name] = {"train": info, "scores": {k: v.summary() for k, v in sorted(scores.items())}}
        print(f"{name}: {info}", file=sys.stderr, flush=True)
    config = build_config(TrainOptions(data=a.data, out=a.data, preset=a.preset), encoder)
    structures = sorted(set().union(*(c.targets for c in train_cases)))
    torch.manual_seed(a.seed)
    net = make_segresnet(len(structures), a.segresnet_filters)
    sampler = MultiLabelPatchSampler(prepare_cases(train_cases, config), structures, config.roi_size, seed=a.seed)
    info = train_segresnet(net, sampler, a.budget_s, lr=a.segresnet_lr)
    segmenter = DenseSegmenter(net, structures, config.spacing, config.roi_size, config.hu_window)
    start = time.perf_counter()
    scores = evaluate_cases(segmenter, test_cases)  # type: ignore[arg-type]  # same predict() contract
    info["eval_seconds"] = round(time.perf_counter() - start, 1)
    results["segresnet"] = {"train": info, "scores": {k: v.summary() for k, v in sorted(scores.items())}}
    print(f"segresnet: {info}", file=sys.stderr, flush=True)
    return results


def format_table(results: dict[str, dict]) -> str:
    """Markdown: one row per structure, one column per method, cells ``Dice / HD95``; then means and steps."""
    methods = list(results)
    names = sorted({n for r in results.values() for n, s in r["scores"].items() if s["cases"]})
    head = "| structure | " + " | ".join(methods) + " |"
    lines = [head, "|---|" + "---:|" * len(methods)]

    def cell(s: dict) -> str:
        dice = "-" if s.get("dice") is None else f"{s['dice']:.3f}"
        hd = "-" if s.get("hd95_mm") is None else f"{s['hd95_mm']:.1f}"
        return f"{dice} / {hd}"

    for n in names:
        lines.append(f"| {n} | " + " | ".join(cell(results[m]["scores"].get(n, {})) for m in methods) + " |")
    means = []
    for m in methods:
        scores = [results[m]["scores"][n] for n in names if n in results[m]["scores"]]
        dice = [s["dice"] for s in scores if s["dice"] is not None]
        hd = [s["hd95_mm"] for s in scores if s["hd95_mm"] is not None]
        mean = {"dice": float(np.mean(dice)) if dice else None, "hd95_mm": float(np.mean(hd)) if hd else None}
        means.append(cell(mean))
    lines.append("| **mean** | " + " | ".join(means) + " |")
    lines.append("| training steps | " + " | ".join(str(results[m]["train"]["steps"]) for m in methods) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """CLI flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budget-s", type=float, default=150.0, help="training wall-clock seconds per method (150)")
    p.add_argument("--data", type=Path, default=Path("runs/bench_accuracy"), help="phantoms are cached here")
    p.add_argument("--train-cases", type=int, default=8)
    p.add_argument("--test-cases", type=int, default=3)
    p.add_argument("--phantom-spacing", type=float, default=4.0, help="isotropic voxel size of the phantoms (mm)")
    p.add_argument("--preset", default="small", choices=("tiny", "small", "default"))
    p.add_argument("--lr", type=float, default=4e-3, help="TextDiffSeg AdamW learning rate (the demo's)")
    p.add_argument("--segresnet-lr", type=float, default=2e-3)
    p.add_argument("--segresnet-filters", type=int, default=16)
    p.add_argument("--text-encoder", default="default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--quick", action="store_true", help="smoke test: tiny preset, 1 + 1 cases, 6 mm, 3 s budgets")
    p.add_argument("--json", type=Path, help="also write the results here")
    a = p.parse_args(argv)
    if a.quick:
        a.budget_s, a.train_cases, a.test_cases, a.phantom_spacing, a.preset = 3.0, 1, 1, 6.0, "tiny"
        a.segresnet_filters = 8
        if a.data == Path("runs/bench_accuracy"):
            a.data = Path("runs/bench_accuracy_quick")
    return a


def main(argv: list[str] | None = None) -> int:
    """Print the markdown table (and write JSON)."""
    a = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    load_before, started = os.getloadavg(), time.perf_counter()
    results = run(a)
    machine = {
        "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "seconds": round(time.perf_counter() - started, 1), "budget_s": a.budget_s, "preset": a.preset,
        "train_cases": a.train_cases, "test_cases": a.test_cases, "phantom_spacing_mm": a.phantom_spacing,
    }
    print(
        f"{machine['cpu_cores']} CPU cores, torch threads {machine['torch_threads']}, load average before "
        f"{machine['loadavg_before']} after {machine['loadavg_after']}; {a.budget_s:g} s training per method, "
        f"preset {a.preset}, {a.train_cases} training phantoms (seed 100), {a.test_cases} test phantoms (seed 200) at "
        f"{a.phantom_spacing:g} mm; {machine['seconds']} s in all. Cells: Dice / HD95 (mm), structures present only."
    )
    print(format_table(results))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"machine": machine, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
