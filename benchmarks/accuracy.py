"""Accuracy at equal training time: TextDiffSeg, its three ablations and a MONAI SegResNet, on held-out phantoms.

Run: ``python benchmarks/accuracy.py [--budget-s 150] [--marks K] [--json OUT] [--plot OUT.png]`` (45 minutes on 2
heavily shared CPU cores with the default budget; ``--budget-s 1800`` is the longer setting: about 2.5 hours plus
evaluation). Methods can run in separate processes (``--methods M --data DIR_M --json M.json`` each, one after
another: side by side on 2 cores SegResNet lost a third of its speed); ``--merge A.json B.json [--json OUT] [--plot
OUT.png]`` then prints their one table. ``--marks K`` also scores every method at K - 1 evenly spaced points of its
budget (the training clock stops while it does): a learning curve, to see whether the budget was long enough for a
method to stop improving. ``--set FIELD=VALUE`` trains the TextDiffSeg variants with a changed ``ModelConfig`` field
(an experiment beside the paper's ablations; the table names the change), ``--save-models DIR`` keeps their final
models for ``scripts/diagnose_prompt.py``.

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
from collections.abc import Callable
from dataclasses import fields, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baselines import (  # noqa: E402
    DenseSegmenter,
    MultiLabelPatchSampler,
    TrainingClock,
    make_segresnet,
    train_segresnet,
)

from textdiffseg.checkpoint import save_checkpoint  # noqa: E402
from textdiffseg.config import ModelConfig  # noqa: E402
from textdiffseg.data.folders import LabelledCase, load_folder  # noqa: E402
from textdiffseg.data.phantom import PhantomConfig, write_dataset  # noqa: E402
from textdiffseg.data.vocabulary import PromptVocabulary  # noqa: E402
from textdiffseg.evaluate import score_cases  # noqa: E402
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
    model: TextDiffSeg,
    encoder: TextEncoder,
    train_cases: list[LabelledCase],
    clock: TrainingClock,
    lr: float,
    seed: int,
) -> dict:
    """Train ``model`` with the ``textdiffseg.train_loop`` components (``Trainer``, ``PromptedPatchSampler``) until
    ``clock``'s budget is spent."""
    trainer = Trainer(model, encoder, lr=lr, seed=seed)
    sampler = PromptedPatchSampler(
        prepare_cases(train_cases, model.config), PromptVocabulary.load(None), model.config.roi_size, seed=seed
    )
    window: list[dict] = []
    while clock.running(trainer.state.step):
        window = [*window[-19:], trainer.step([sampler.sample()])]
    model.eval()
    return {
        "steps": trainer.state.step,
        "seconds": round(clock.elapsed(), 1),
        "final_loss": mean_terms(window).get("loss"),
    }


def parse_setting(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` of ``--set``: a :class:`ModelConfig` field and a JSON value (lists become tuples)."""
    key, sep, raw = text.partition("=")
    if not sep or key not in {f.name for f in fields(ModelConfig)}:
        raise argparse.ArgumentTypeError(f"{text!r} is not FIELD=VALUE with a ModelConfig field")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: the value is not JSON ({err.msg})") from err
    return key, tuple(value) if isinstance(value, list) else value


def method_label(name: str, settings: dict[str, object]) -> str:
    """The method's name in tables and JSON, with any ``--set`` changes: ``textdiffseg prompt_film=true``."""
    return " ".join([name, *(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in sorted(settings.items()))])


def mean_dice(scores: dict[str, dict]) -> float:
    """Mean Dice over the structures present in the test cases."""
    return float(np.mean([s["dice"] for s in scores.values() if s["dice"] is not None]))


class LearningCurve:
    """Scores one method at the marks of its :class:`TrainingClock` (``segmenter()`` builds its predictor from the
    model as it is at that moment)."""

    def __init__(self, budget_s: float, marks: int, test_cases: list[LabelledCase]) -> None:
        self.budget_s, self.marks, self.test_cases = budget_s, marks, test_cases
        self.points: list[dict] = []

    def clock(self, segmenter: Callable[[], object], model: torch.nn.Module) -> TrainingClock:
        """A clock whose marks score ``segmenter()`` and leave ``model`` in training mode."""

        def on_mark(steps: int) -> None:
            model.eval()
            self.add(steps, len(self.points) + 1, self.score(segmenter()))
            model.train()

        return TrainingClock(self.budget_s, self.marks, on_mark)

    def score(self, segmenter: object) -> dict[str, dict]:
        """Per-structure summaries of ``segmenter`` on the test cases."""
        with torch.no_grad():
            return score_cases(segmenter, self.test_cases)  # type: ignore[arg-type]  # same predict() contract

    def add(self, steps: int, mark: int, scores: dict[str, dict]) -> None:
        """Record the mean Dice at a mark."""
        train_s = round(self.budget_s * mark / self.marks, 1)
        self.points.append({"train_s": train_s, "steps": steps, "mean_dice": round(mean_dice(scores), 4)})

    def finish(self, info: dict, segmenter: object, name: str) -> dict:
        """The method's result after its budget: training info, final scores (the last point of the curve)."""
        start = time.perf_counter()
        scores = self.score(segmenter)
        info["eval_seconds"] = round(time.perf_counter() - start, 1)
        self.add(int(info["steps"]), self.marks, scores)
        print(f"{name}: {info} curve {self.points}", file=sys.stderr, flush=True)
        return {"train": info, "scores": scores, "curve": self.points}


def run(a: argparse.Namespace) -> dict:
    """Train and evaluate every method; returns the JSON-able results."""
    tag = f"{a.phantom_spacing:g}mm"
    train_cases = phantom_folder(a.data / f"train_s100_n{a.train_cases}_{tag}", a.train_cases, 100, a.phantom_spacing)
    test_cases = phantom_folder(a.data / f"test_s200_n{a.test_cases}_{tag}", a.test_cases, 200, a.phantom_spacing)
    encoder = TextEncoder(a.text_encoder)
    results: dict[str, dict] = {}
    for name, ablations in METHODS.items():
        if name not in a.methods:
            continue
        config = build_config(TrainOptions(data=a.data, out=a.data, preset=a.preset, ablations=ablations), encoder)
        config = replace(config, **a.set)
        name = method_label(name, a.set)
        torch.manual_seed(a.seed)
        model = TextDiffSeg(config)
        curve = LearningCurve(a.budget_s, a.marks, test_cases)
        segmenter = partial(Segmenter, model, encoder)
        info = train_textdiffseg(model, encoder, train_cases, curve.clock(segmenter, model), a.lr, a.seed)
        results[name] = curve.finish(info, segmenter(), name)
        if a.save_models:
            save_checkpoint(a.save_models / f"{name.replace(' ', '_')}.pt", model, extra={"steps": int(info["steps"])})
    if "segresnet" not in a.methods:
        return results
    config = build_config(TrainOptions(data=a.data, out=a.data, preset=a.preset), encoder)
    structures = sorted(set().union(*(c.targets for c in train_cases)))
    torch.manual_seed(a.seed)
    net = make_segresnet(len(structures), a.segresnet_filters)
    sampler = MultiLabelPatchSampler(prepare_cases(train_cases, config), structures, config.roi_size, seed=a.seed)
    dense = partial(DenseSegmenter, net, structures, config.spacing, config.roi_size, config.hu_window)
    curve = LearningCurve(a.budget_s, a.marks, test_cases)
    info = train_segresnet(net, sampler, a.budget_s, lr=a.segresnet_lr, clock=curve.clock(dense, net))
    results["segresnet"] = curve.finish(info, dense(), "segresnet")
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


def format_curve(results: dict[str, dict]) -> str:
    """Markdown: one row per mark (training seconds), one column per method, cells ``mean Dice (steps)``."""
    methods = list(results)
    lines = ["| training s | " + " | ".join(methods) + " |", "|---:|" + "---:|" * len(methods)]
    for k, point in enumerate(results[methods[0]]["curve"]):
        cells = [f"{results[m]['curve'][k]['mean_dice']:.3f} ({results[m]['curve'][k]['steps']})" for m in methods]
        lines.append(f"| {point['train_s']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curve(results: dict[str, dict], out: Path) -> None:
    """PNG: mean Dice on the test phantoms against training seconds, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, result in results.items():
        ax.plot(
            [0] + [p["train_s"] for p in result["curve"]],
            [0] + [p["mean_dice"] for p in result["curve"]],
            marker="o",
            label=method,
        )
    ax.set_xlabel("training seconds (2 CPU cores)")
    ax.set_ylabel("mean Dice, held-out phantoms")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)


# What must agree for runs of different methods to share one table (``--merge``).
SAME_SETTINGS = ("budget_s", "preset", "train_cases", "test_cases", "phantom_spacing_mm", "marks")


def merge_runs(runs: list[dict]) -> dict:
    """One benchmark result from several ``--json`` files written by runs of different methods (one process per
    method, one after another): their results together and each run's machine record. Raises ``ValueError`` when a
    method appears twice or the runs' settings differ."""
    results: dict[str, dict] = {}
    for run in runs:
        for setting in SAME_SETTINGS:
            if run["machine"].get(setting) != runs[0]["machine"].get(setting):
                raise ValueError(
                    f"runs differ in {setting}: {runs[0]['machine'].get(setting)} and {run['machine'].get(setting)}"
                )
        for method, result in run["results"].items():
            if method in results:
                raise ValueError(f"{method} is in more than one run")
            results[method] = result
    return {"machine": [run["machine"] for run in runs], "results": results}


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
    p.add_argument(
        "--methods",
        nargs="+",
        default=[*METHODS, "segresnet"],
        choices=[*METHODS, "segresnet"],
        help="which methods to train (all)",
    )
    p.add_argument("--marks", type=int, default=1, help="score each method at this many points of its budget (1)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--plot", type=Path, help="write the learning curves (mean Dice per mark) as a PNG here")
    p.add_argument(
        "--set",
        type=parse_setting,
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="change a ModelConfig field of every TextDiffSeg variant (repeatable; JSON value, e.g. prompt_film=true, "
        "image_channels=[24], absent_weight=0); the method's name in the table says what was changed",
    )
    p.add_argument(
        "--save-models",
        type=Path,
        metavar="DIR",
        help="also save each TextDiffSeg variant's final model as DIR/METHOD.pt (for scripts/diagnose_prompt.py)",
    )
    p.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="train nothing: one table (and --json, --plot) from the --json files of runs of other methods",
    )
    a = p.parse_args(argv)
    a.set = dict(a.set)
    if a.save_models:  # refuse an unwritable folder now, not after the training budget
        try:
            a.save_models.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            p.error(f"--save-models {a.save_models}: {err.strerror}")
    if a.marks < 1:
        p.error("--marks must be 1 or more")
    if a.quick:
        a.budget_s, a.train_cases, a.test_cases, a.phantom_spacing, a.preset = 3.0, 1, 1, 6.0, "tiny"
        a.segresnet_filters = 8
        if a.data == Path("runs/bench_accuracy"):
            a.data = Path("runs/bench_accuracy_quick")
    return a


def main(argv: list[str] | None = None) -> int:
    """Print the markdown table (and write JSON)."""
    a = parse_args(argv)
    if a.merge:
        return print_merged(a)
    if a.threads:
        torch.set_num_threads(a.threads)
    load_before, started = os.getloadavg(), time.perf_counter()
    results = run(a)
    machine = {
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "seconds": round(time.perf_counter() - started, 1),
        "budget_s": a.budget_s,
        "preset": a.preset,
        "train_cases": a.train_cases,
        "test_cases": a.test_cases,
        "phantom_spacing_mm": a.phantom_spacing,
        "marks": a.marks,
    }
    print(
        f"{machine['cpu_cores']} CPU cores, torch threads {machine['torch_threads']}, load average before "
        f"{machine['loadavg_before']} after {machine['loadavg_after']}; {a.budget_s:g} s training per method, "
        f"preset {a.preset}, {a.train_cases} training phantoms (seed 100), {a.test_cases} test phantoms (seed 200) at "
        f"{a.phantom_spacing:g} mm; {machine['seconds']} s in all. Cells: Dice / HD95 (mm), structures present only."
    )
    report(a, {"machine": machine, "results": results}, a.marks)
    return 0


def report(a: argparse.Namespace, record: dict, marks: int) -> None:
    """Print the table (and, with several marks, the learning curves); write ``--plot`` and ``--json``."""
    print(format_table(record["results"]))
    if marks > 1:
        print("\nLearning curves (mean Dice over the structures present, steps in brackets):\n")
        print(format_curve(record["results"]))
    if a.plot:
        plot_curve(record["results"], a.plot)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(record, indent=1))


def read_run(path: Path) -> dict:
    """One run's ``--json`` file (its ``machine`` record and ``results``); ``ValueError`` for anything else."""
    run = json.loads(path.read_text())
    if not (isinstance(run, dict) and isinstance(run.get("machine"), dict) and isinstance(run.get("results"), dict)):
        raise ValueError(f"{path} is not the --json file of one run (a merged file cannot be merged again)")
    return run


def print_merged(a: argparse.Namespace) -> int:
    """``--merge``: the tables (and JSON, plot) of several runs' files; a one-line error when they do not fit."""
    try:
        merged = merge_runs([read_run(path) for path in a.merge])
    except (OSError, ValueError) as error:
        print(f"accuracy.py --merge: {error}", file=sys.stderr)
        return 2
    for path, machine in zip(a.merge, merged["machine"]):
        print(
            f"{path}: torch threads {machine['torch_threads']}, load average before {machine['loadavg_before']} "
            f"after {machine['loadavg_after']}, {machine['seconds']} s"
        )
    report(a, merged, merged["machine"][0].get("marks", 1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
