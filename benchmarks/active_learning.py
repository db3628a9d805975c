"""Active learning, measured (issue 14 item 5): which image should a site label next, and does it matter?

Run: ``python benchmarks/active_learning.py [--rounds 3] [--minutes 2] [--pool-phantoms 4] [--test-phantoms 4]``
(``--quick`` for a small run). For each strategy of the app (``diffusion_uncertainty``, ``random``, ``first``) it

1. starts ``python -m monailabel.main start_server`` (``--conf anonymous_admin true``) on a copy of
   ``apps/textdiffseg_app`` serving a copy of the shipped model (the shipped file is only read), with the same pool
   of unlabelled images: wide-randomised phantoms of a seed no training used (``python -m textdiffseg.data.phantom
   --randomise wide --seed 400 --spacing 2.5 2.5 2.5``) and the real CTs of ``datasets/realct`` other than the test
   patient;
2. each round: (``diffusion_uncertainty`` only) ``POST /scoring/diffusion_uncertainty``; ``POST
   /activelearning/<strategy>`` for the image to label; ``PUT /datastore/label`` with that image's TRUE label (a real
   case's ``label_info`` names every value as ``datasets/realct`` does; a phantom's goes without: the app reads
   phantom labels by their values); ``POST /train/textdiffseg`` with a fixed ``max_minutes`` budget (run name
   ``round_NN``), polled through ``GET /train/`` until it ends; the publish gate's verdict from ``/info``'s
   ``train_stats``; then the fixed test set through ``POST /infer/textdiffseg`` (each test image uploaded, its test
   structures in one ``text_prompt``), Dice of the label map against the truth (``textdiffseg.model_scores.dice``)
   for whatever model the server serves after the round; and the round's own model (``round_NN/model.pt``,
   published or not) on the same test set in this process, through the served pipeline's ``Segmenter``;
3. round 0 (the shipped model, no label yet) is scored once, on the first strategy's server: every strategy serves
   the same file then and ``/infer`` is seeded, so its masks are the same on each.

The test set is disjoint from the pool: wide phantoms of another seed (500) and the real abdomen ``ts_abdomen``
(which the shipped model never trained on). Test Dice of a round is the mean over the test images of each image's
mean Dice over the test structures it contains.

Writes ``active_learning.json`` (every figure, picks, timings, train stats), ``active_learning.md`` (tables) and
``active_learning.png`` (test Dice per round and strategy) under ``--out`` (default ``runs/active_learning/``), the
PNG also to ``--docs-png`` (default ``docs/active_learning.png``; not with ``--quick``), and each server's log.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import nibabel as nib
import numpy as np
import requests
import torch
from monai.transforms import EnsureChannelFirst, LoadImage
from monailabel.client import MONAILabelClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from server_harness import ADMIN_CONF, DEMO_CHECKPOINT, RunningServer, copy_app, start_server  # noqa: E402
from textdiffseg.checkpoint import CheckpointError, load_for_inference  # noqa: E402
from textdiffseg.data import phantom  # noqa: E402
from textdiffseg.data.folders import load_folder  # noqa: E402
from textdiffseg.finetune import REGRESSION_CASES, REGRESSION_SEED, REHEARSAL_CASES, REHEARSAL_SEED, phantom_set  # noqa: E402
from textdiffseg.inference import Segmenter  # noqa: E402
from textdiffseg.model_scores import dice, mean_score  # noqa: E402

MODEL = "textdiffseg"
STRATEGIES = ("diffusion_uncertainty", "random", "first")
POOL_SEED, TEST_SEED = 400, 500  # phantom series no training, rehearsal, gate or evaluation set uses
REAL_POOL = ("ts_chest_cta", "rider_lung", "slicer_chest")
REAL_TEST = ("ts_abdomen",)
STRUCTURES = ("liver", "spleen", "left kidney", "right kidney", "pancreas", "colon", "aorta")
TRAIN_POLL_S = 5.0
RUNNING = ("SUBMITTED", "RUNNING")


@dataclass(frozen=True)
class Case:
    """One labelled image: its datastore id, files, the names of its label values and its structures."""

    case_id: str
    image: Path
    label: Path
    label_info: tuple[tuple[str, int], ...]  # (name, value) of every label value (empty: a phantom label)
    targets: Mapping[str, tuple[int, ...]]  # structure -> label values (the truth the test set is scored on)
    real: bool

    def label_info_json(self) -> list[dict[str, object]]:
        """``label_info`` as 3D Slicer saves it."""
        return [{"name": name, "idx": value} for name, value in self.label_info]


# ---------------------------------------------------------------------------------------------------- data


def phantom_cases(folder: Path, n: int, seed: int, spacing: float, prefix: str) -> list[Case]:
    """``n`` wide-randomised phantoms of series ``seed``, ids ``prefix``_i: what ``python -m textdiffseg.data.phantom
    --out FOLDER --n N --seed SEED --spacing S S S --randomise wide`` writes."""
    phantom.write_dataset(folder, n, seed, phantom.PhantomConfig(spacing=(spacing,) * 3, randomise="wide"))
    return [  # no label_info: the app reads a label without one with the phantom's values (PHANTOM_TARGETS)
        Case(f"{prefix}_{i:03d}", c.image, c.label, (), dict(c.targets), real=False)
        for i, c in enumerate(load_folder(folder))
    ]


def real_cases(folder: Path, ids: Sequence[str]) -> list[Case]:
    """The ``datasets/realct`` cases ``ids``; ``label_info`` names each value as the folder's ``dataset.json`` does."""
    if not ids:
        return []
    meta = {e["case_id"]: e for e in json.loads((folder / "dataset.json").read_text())["training"]}
    by_id = {c.case_id: c for c in load_folder(folder)}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise SystemExit(f"{folder} has no case {', '.join(missing)} (run `make realct`)")
    cases = []
    for case_id in ids:
        names = tuple((entry["name"], int(entry["value"])) for entry in meta[case_id]["labels"])
        c = by_id[case_id]
        cases.append(Case(case_id, c.image, c.label, names, dict(c.targets), real=True))
    return cases


def check_disjoint(pool: Sequence[Case], test: Sequence[Case]) -> None:
    """Refuse a test set sharing an id or an image file with the pool (``ValueError``)."""
    ids = {c.case_id for c in pool} & {c.case_id for c in test}
    files = {c.image.resolve() for c in pool} & {c.image.resolve() for c in test}
    if ids or files:
        raise ValueError(f"test set overlaps the pool: {sorted(ids) or sorted(map(str, files))}")


def prepare_data(a: argparse.Namespace, work: Path) -> tuple[list[Case], list[Case]]:
    """The pool (phantoms then real cases) and the test set, disjoint."""
    pool = phantom_cases(work / "pool_phantoms", a.pool_phantoms, POOL_SEED, a.spacing, f"phantom{POOL_SEED}")
    pool += real_cases(a.data, a.real_pool)
    test = phantom_cases(work / "test_phantoms", a.test_phantoms, TEST_SEED, a.spacing, f"test{TEST_SEED}")
    test += real_cases(a.data, a.real_test)
    check_disjoint(pool, test)
    return pool, test


def write_studies(folder: Path, pool: Sequence[Case]) -> Path:
    """A MONAI Label studies folder holding the pool's images (named by case id) and no label."""
    folder.mkdir(parents=True)
    for case in pool:
        shutil.copyfile(case.image, folder / f"{case.case_id}.nii.gz")
    return folder


def gate_phantoms(cache: Path) -> Path:
    """The trainer's rehearsal and publish-gate phantoms, written once and copied into each app (saves each server's
    first ``/train`` generating them; the app reuses a finished folder)."""
    phantom_set(cache / f"rehearsal_{REHEARSAL_SEED}", REHEARSAL_SEED, REHEARSAL_CASES)
    phantom_set(cache / f"regression_{REGRESSION_SEED}", REGRESSION_SEED, REGRESSION_CASES)
    return cache


# ---------------------------------------------------------------------------------------------------- scoring


def case_dice(predicted: np.ndarray, label_names: Mapping[str, int], case: Case, structures: Sequence[str]) -> dict:
    """``{structure: Dice}`` for each of ``structures`` the case contains, from a label map (on the case's grid)
    whose values ``label_names`` names (as ``/infer`` answers)."""
    truth = np.asarray(nib.load(case.label).dataobj).round().astype(np.int32)
    scores = {}
    for name in structures:
        present = np.isin(truth, case.targets.get(name, ()))
        if present.any():
            scores[name] = round(dice(predicted == label_names.get(name, -1), present), 4)
    return scores


def present_structures(case: Case, structures: Sequence[str]) -> list[str]:
    """The test structures the case's truth contains (only those are prompted and scored)."""
    truth = np.asarray(nib.load(case.label).dataobj).round().astype(np.int32)
    return [name for name in structures if np.isin(truth, case.targets.get(name, ())).any()]


def score_test_set(client: MONAILabelClient, test: Sequence[Case], prompts: Mapping[str, list[str]]) -> dict:
    """``{case id: {structure: Dice}}`` of the served model: each test image uploaded to ``/infer`` with its prompts."""
    scores = {}
    for case in test:
        params = {"text_prompt": "; ".join(prompts[case.case_id]), "result_extension": ".nii.gz"}
        result, answer = client.infer(MODEL, "", params, file=str(case.image))
        predicted = np.asarray(nib.load(result).dataobj)
        scores[case.case_id] = case_dice(predicted, answer["label_names"], case, prompts[case.case_id])
        Path(result).unlink(missing_ok=True)
    return scores


def score_checkpoint(ckpt: Path, test: Sequence[Case], prompts: Mapping[str, list[str]], encoders: dict) -> dict:
    """``{case id: {structure: Dice}}`` of a checkpoint the server does not serve (a run the publish gate kept
    back), in this process: the served pipeline's ``Segmenter`` (same post-processing and noise seed), its label map
    scored like ``/infer``'s."""
    model, encoder = load_for_inference(ckpt, encoder_cache=encoders)
    segmenter = Segmenter(model, encoder)
    load, channel_first = LoadImage(image_only=True), EnsureChannelFirst()
    scores = {}
    for case in test:
        names = prompts[case.case_id]
        with torch.inference_mode():
            prediction = segmenter.predict(channel_first(load(str(case.image))), names)
        scores[case.case_id] = case_dice(prediction.label_map, {n: i + 1 for i, n in enumerate(names)}, case, names)
    return scores


def dice_means(scores: Mapping[str, Mapping[str, float]], real_ids: set[str]) -> dict[str, float | None]:
    """Mean over images of each image's mean Dice: all test images, phantoms only, real CT only."""

    def over(ids: list[str]) -> float | None:
        return round(float(np.mean([mean_score(dict(scores[i])) for i in ids])), 4) if ids else None

    return {
        "all": over(list(scores)),
        "phantoms": over([i for i in scores if i not in real_ids]),
        "real": over([i for i in scores if i in real_ids]),
    }


# ---------------------------------------------------------------------------------------------------- REST


def refresh_uncertainty(url: str) -> dict[str, float]:
    """``POST /scoring/diffusion_uncertainty`` (synchronous): scores the unlabelled images the served model has not
    scored yet; returns ``{image: score}``."""
    answer = requests.post(f"{url}/scoring/diffusion_uncertainty?run_sync=true", timeout=4 * 3600)
    answer.raise_for_status()
    return {k: round(float(v), 6) for k, v in answer.json().items()}


def pick_image(url: str, strategy: str) -> dict:
    """``POST /activelearning/<strategy>``: the image the strategy wants labelled next."""
    answer = requests.post(f"{url}/activelearning/{strategy}", json={}, timeout=120)
    answer.raise_for_status()
    picked = answer.json()
    if not picked.get("id"):
        raise RuntimeError(f"{strategy} picked nothing: {picked}")
    return {k: v for k, v in picked.items() if k not in ("path", "name")}


def save_truth(client: MONAILabelClient, case: Case) -> None:
    """``PUT /datastore/label``: the case's true label as its ``final`` label, every value named in ``label_info``
    (a phantom's label goes without: the app reads it with the phantom's label values)."""
    params = {"label_info": case.label_info_json()} if case.label_info else {}
    client.save_label(case.case_id, str(case.label), tag="final", params=params)


def train(client: MONAILabelClient, url: str, minutes: float, name: str, timeout_s: float) -> dict:
    """``POST /train/textdiffseg`` with a ``max_minutes`` budget; polls ``GET /train/`` until it ends."""
    start = time.perf_counter()
    client.train_start(MODEL, {"max_minutes": minutes, "name": name})
    deadline = time.monotonic() + timeout_s
    status: dict = {"status": "SUBMITTED"}
    while status.get("status") in RUNNING:
        if time.monotonic() > deadline:
            raise TimeoutError(f"/train still running after {timeout_s:.0f} s")
        time.sleep(TRAIN_POLL_S)
        status = requests.get(f"{url}/train/", timeout=30).json()
    return {"wall_s": round(time.perf_counter() - start, 1), "task_status": status.get("status")}


def train_summary(stats: Mapping) -> dict:
    """What a round needs from ``train_stats``: steps, time, the publish gate's verdict and why."""
    gate = stats.get("publish_gate") or {}
    return {
        "status": stats.get("status"),
        "error": stats.get("error"),
        "trained_steps": stats.get("trained_steps"),
        "total_time": stats.get("total_time"),
        "train_cases": stats.get("train_cases"),
        "validation_cases": stats.get("validation_cases"),
        "best_val_dice": stats.get("best_val_dice"),
        "published": bool(stats.get("published")),
        "gate_reason": gate.get("reason"),
        "gate_drops": gate.get("drops"),
    }


# ---------------------------------------------------------------------------------------------------- rounds


@dataclass
class Session:
    """One strategy's server and what the rounds share."""

    strategy: str
    server: RunningServer
    client: MONAILabelClient
    pool: dict[str, Case]
    test: list[Case]
    prompts: dict[str, list[str]]
    real_ids: set[str]
    args: argparse.Namespace
    encoders: dict = field(default_factory=dict)  # text encoders loaded in this process (scoring candidates)


def one_round(s: Session, number: int, served: str) -> dict:
    """Score (uncertainty only), pick, label, train, test the served model and the run's own; the round's record."""
    record: dict = {"round": number}
    start = time.perf_counter()
    if s.strategy == "diffusion_uncertainty":
        record["uncertainty"] = refresh_uncertainty(s.server.url)
        record["scoring_s"] = round(time.perf_counter() - start, 1)
    pick = pick_image(s.server.url, s.strategy)
    case = s.pool[pick["id"]]
    record.update(picked=case.case_id, picked_real=case.real, pick_answer=pick)
    save_truth(s.client, case)
    name = f"round_{number:02d}"
    record["train"] = train(s.client, s.server.url, s.args.minutes, name, s.args.train_timeout_s)
    record["train"].update(train_summary(s.client.info()["train_stats"][MODEL]))
    record["served"] = name if record["train"]["published"] else served
    test_start = time.perf_counter()
    record["test"] = score_test_set(s.client, s.test, s.prompts)
    record["test_s"] = round(time.perf_counter() - test_start, 1)
    record["test_dice"] = dice_means(record["test"], s.real_ids)
    candidate = s.server.app_dir / "model" / MODEL / name / "model.pt"
    if candidate.is_file():  # what this round's training made, published or not
        try:
            record["candidate_test"] = score_checkpoint(candidate, s.test, s.prompts, s.encoders)
            record["candidate_dice"] = dice_means(record["candidate_test"], s.real_ids)
        except CheckpointError as err:  # recorded: the served figures of the round stand without it
            record["candidate_error"] = str(err)
    record["round_s"] = round(time.perf_counter() - start, 1)
    return record


def app_copy(work: Path, cache: Path) -> Path:
    """A copy of the app serving a copy of the shipped model, with the trainer's phantoms already in place."""
    app = copy_app(work / "app", DEMO_CHECKPOINT)
    shutil.copytree(cache, app / "model" / MODEL / "phantoms")
    return app


def run_strategy(
    strategy: str, pool: list[Case], test: list[Case], a: argparse.Namespace, cache: Path, round0: dict | None
) -> dict:
    """Every round of one strategy on its own server; ``round0`` is scored here when not given."""
    work = a.work / strategy
    work.mkdir(parents=True)
    studies = write_studies(work / "studies", pool)
    conf = {**ADMIN_CONF, "uncertainty_ensemble": str(a.uncertainty_ensemble)}
    env = {"OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
    start = time.perf_counter()
    server = start_server(app_copy(work, cache), studies, work, conf=conf, env=env)
    prompts = {c.case_id: present_structures(c, a.structures) for c in test}
    client = MONAILabelClient(server.url, tmpdir=str(work))
    s = Session(
        strategy, server, client, {c.case_id: c for c in pool}, test, prompts, {c.case_id for c in test if c.real}, a
    )
    record: dict = {"strategy": strategy, "rounds": []}
    try:
        if round0 is None:
            scores = score_test_set(client, test, prompts)
            means = dice_means(scores, s.real_ids)
            round0 = {"round": 0, "served": "shipped", "test": scores, "test_dice": means, "candidate_dice": means}
            record["round0_scored_here"] = True
        served = "shipped"
        for number in range(1, a.rounds + 1):
            done = one_round(s, number, served)
            served = done["served"]
            record["rounds"].append(done)
            print(progress_line(strategy, done), file=sys.stderr, flush=True)
    finally:
        server.stop()
        a.out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(server.log, a.out / f"{strategy}.server.log")
    record["rounds"].insert(0, round0)
    record["wall_s"] = round(time.perf_counter() - start, 1)
    return record


def progress_line(strategy: str, r: dict) -> str:
    """One line per finished round (stderr)."""
    t = r["train"]
    return (
        f"{strategy} round {r['round']}: picked {r['picked']}, /train {t['wall_s']:.0f} s, {t['trained_steps']} steps, "
        f"published {t['published']}, test Dice served {r['test_dice']['all']:.3f} / own "
        f"{(r.get('candidate_dice') or {}).get('all')}, round {r['round_s']:.0f} s"
    )


# ---------------------------------------------------------------------------------------------------- summary


KINDS = {"served": "test_dice", "candidate": "candidate_dice"}  # the model served after a round / the round's own


def curve(record: Mapping, kind: str = "served") -> list[float | None]:
    """Test Dice (all test images) after rounds 0..N of one strategy: of the served model, or of each round's own
    model (``candidate``: published or not; round 0 is the shipped model for both; ``None`` where a run failed)."""
    return [(r.get(KINDS[kind]) or {}).get("all") for r in record["rounds"]]


def rounds_to_reach(values: Sequence[float | None], target: float) -> int | None:
    """The first round (labels added) whose test Dice is at least ``target``; ``None`` if none is."""
    return next((i for i, v in enumerate(values) if v is not None and v >= target - 1e-9), None)


def verdict(curves: Mapping[str, Sequence[float | None]]) -> dict:
    """Whether ``diffusion_uncertainty`` reached random's final test Dice in fewer rounds than random did.

    When random's final figure is not above round 0 (the shipped model, shared by every strategy), labelling did not
    improve on the start and "fewer rounds" means nothing: the verdict says so instead of counting round 0."""
    target, start = curves["random"][-1], curves["random"][0]
    if target is None or start is None:
        return {"random_final": target, "fewer_rounds": False, "text": "random's first or last round has no test Dice"}
    reach = {name: rounds_to_reach(values, target) for name, values in curves.items()}
    ours, theirs = reach.get("diffusion_uncertainty"), reach["random"]
    fewer = target > start + 1e-9 and ours is not None and theirs is not None and ours < theirs
    if target <= start + 1e-9:
        text = (
            f"random's final test Dice ({target:.3f}) is not above round 0's ({start:.3f}, the shipped model): "
            "labelling did not improve on the start, so no strategy reached it in fewer rounds"
        )
    elif ours is None:
        text = f"diffusion_uncertainty never reached random's final test Dice ({target:.3f})"
    else:
        text = (
            f"diffusion_uncertainty reached random's final test Dice ({target:.3f}) after {ours} round(s), "
            f"random after {theirs}: {'fewer' if fewer else 'not fewer'}"
        )
    return {"random_final": target, "rounds_to_random_final": reach, "fewer_rounds": fewer, "text": text}


def verdicts(strategies: Mapping[str, Mapping]) -> dict:
    """:func:`verdict` on the served models' curves and on the rounds' own models' curves."""
    if "random" not in strategies or "diffusion_uncertainty" not in strategies:
        return {kind: {"text": "needs both random and diffusion_uncertainty"} for kind in KINDS}
    return {kind: verdict({k: curve(v, kind) for k, v in strategies.items()}) for kind in KINDS}


def dice_table(strategies: Mapping[str, Mapping], kind: str = "served") -> str:
    """Markdown: test Dice per round (rows) and strategy (columns): all test images (phantoms / real CT), the image
    labelled that round, and whether the gate published the run."""
    names = list(strategies)
    lines = ["| round | " + " | ".join(names) + " |", "|---:|" + "---|" * len(names)]
    for i in range(max(len(s["rounds"]) for s in strategies.values())):
        row = [cell(s["rounds"][i], kind) if i < len(s["rounds"]) else "" for s in strategies.values()]
        lines.append(f"| {i} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def cell(r: Mapping, kind: str) -> str:
    """``**0.812** (ph 0.850 / real 0.600) + phantom400_001, kept`` (``-`` where there is no figure)."""
    d = r.get(KINDS[kind]) or {}
    if d.get("all") is None:
        return "-"
    parts = [f"**{d['all']:.3f}**"]
    if d.get("phantoms") is not None and d.get("real") is not None:
        parts.append(f"(ph {d['phantoms']:.3f} / real {d['real']:.3f})")
    if "picked" in r:
        parts.append(f"+ {r['picked']}, {'published' if r['train']['published'] else 'kept'}")
    return " ".join(parts)


def timing_table(strategies: Mapping[str, Mapping]) -> str:
    """Markdown: per strategy and round, uncertainty scoring and /train wall times, steps, the gate's verdict."""
    lines = [
        "| strategy | round | picked | scoring s | /train s | steps | published | publish gate |",
        "|---|---:|---|---:|---:|---:|---|---|",
    ]
    for name, s in strategies.items():
        for r in s["rounds"][1:]:
            t = r["train"]
            reason = (t.get("gate_reason") or t.get("error") or "").replace("|", "/")
            lines.append(
                f"| {name} | {r['round']} | {r['picked']} | {r.get('scoring_s', '-')} | {t['wall_s']:.0f} | "
                f"{t['trained_steps']} | {'yes' if t['published'] else 'no'} | {reason} |"
            )
    return "\n".join(lines)


def markdown(record: Mapping) -> str:
    """The report: settings, both Dice tables, timings and the verdicts."""
    s, strategies = record["settings"], record["strategies"]
    return (
        "\n\n".join(
            [
                f"Active learning: {s['rounds']} rounds x {s['minutes']} min `/train` per round, pool "
                f"{len(record['pool'])} images, test {len(record['test'])} images, structures "
                f"{', '.join(s['structures'])}; {record['wall_s'] / 60:.1f} min in all.",
                "Test Dice of the model served after each round:",
                dice_table(strategies, "served"),
                "Test Dice of each round's own model (published or not):",
                dice_table(strategies, "candidate"),
                timing_table(strategies),
                f"Served: {record['verdict']['served']['text']}. Round's own model: "
                f"{record['verdict']['candidate']['text']}.",
            ]
        )
        + "\n"
    )


def plot(record: Mapping, paths: Sequence[Path]) -> None:
    """Test Dice vs round per strategy: the served model (solid) and each round's own model (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.8, 4.0), dpi=120)
    for name, s in record["strategies"].items():
        rounds = range(len(s["rounds"]))
        (line,) = ax.plot(rounds, curve(s, "served"), marker="o", label=f"{name}: served model")
        own = [np.nan if v is None else v for v in curve(s, "candidate")]
        ax.plot(rounds, own, ls="--", marker="x", color=line.get_color(), alpha=0.7, label=f"{name}: round's own model")
    settings = record["settings"]
    ax.set_xlabel("round (true labels added)")
    ax.set_ylabel(f"test Dice ({len(record['test'])} images)")
    ax.set_xticks(range(settings["rounds"] + 1))
    ax.set_title(
        f"Active learning: {settings['minutes']:g} min /train per round, {record['machine_before']['cpus']}-core CPU",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------- main


def machine() -> dict:
    """Where it ran."""
    return {"platform": platform.platform(), "cpus": os.cpu_count(), "loadavg": [round(v, 2) for v in os.getloadavg()]}


def run(a: argparse.Namespace) -> dict:
    """The whole benchmark; returns the record written as JSON."""
    start = time.perf_counter()
    pool, test = prepare_data(a, a.work)
    cache = gate_phantoms(a.work / "gate_phantoms")
    record: dict = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "code": str(ROOT),
        "started": datetime.now().isoformat(timespec="seconds"),
        "machine_before": machine(),
        "settings": {k: v for k, v in vars(a).items() if k not in ("work", "out", "data", "docs_png", "from_json")},
        "pool": [{"id": c.case_id, "real": c.real} for c in pool],
        "test": [{"id": c.case_id, "real": c.real} for c in test],
        "strategies": {},
    }
    round0 = None
    for strategy in a.strategies:
        done = run_strategy(strategy, pool, test, a, cache, round0)
        round0 = done["rounds"][0]
        record["strategies"][strategy] = done
        (a.out / "active_learning.partial.json").write_text(json.dumps(record, indent=2))  # survives a later crash
    record["machine_after"] = machine()
    record["wall_s"] = round(time.perf_counter() - start, 1)
    return record


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line; ``--quick`` shrinks every size (flags given explicitly still win)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, help="labelling rounds per strategy (default 3; quick 1)")
    p.add_argument("--minutes", type=float, help="/train max_minutes per round (default 2; quick 0.1)")
    p.add_argument("--pool-phantoms", type=int, help="wide phantoms in the pool (default 4; quick 2)")
    p.add_argument("--real-pool", nargs="*", help=f"real cases in the pool (default {' '.join(REAL_POOL)}; quick none)")
    p.add_argument("--test-phantoms", type=int, help="wide phantoms in the test set (default 4; quick 1)")
    p.add_argument(
        "--real-test", nargs="*", help=f"real cases in the test set (default {' '.join(REAL_TEST)}; quick none)"
    )
    p.add_argument("--spacing", type=float, help="phantom voxel size in mm (default 2.5; quick 6)")
    p.add_argument("--uncertainty-ensemble", type=int, help="server's --conf uncertainty_ensemble (default 4; quick 1)")
    p.add_argument("--structures", nargs="+", help=f"test structures (default: {', '.join(STRUCTURES)})")
    p.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    p.add_argument("--data", type=Path, default=ROOT / "datasets" / "realct", help="the real CT folder (make realct)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of the server and of this process (default 1: with 2 while other work used the 2 cores, "
        "an /infer took 30x longer)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "active_learning", help="output folder")
    p.add_argument(
        "--docs-png", type=Path, help="second copy of the plot (default docs/active_learning.png; quick: none)"
    )
    p.add_argument("--quick", action="store_true", help="a small run (1 round, tiny budget, 6-mm phantoms)")
    p.add_argument("--from-json", type=Path, help="no run: rewrite the verdicts, markdown and plot of a finished run")
    a = p.parse_args(argv)
    defaults = QUICK if a.quick else FULL
    for key, value in defaults.items():
        if getattr(a, key) is None:
            setattr(a, key, value)
    if a.rounds < 1 or a.minutes <= 0 or a.pool_phantoms < 0 or a.test_phantoms < 0:
        p.error("--rounds >= 1, --minutes > 0, phantom counts >= 0")
    if a.pool_phantoms + len(a.real_pool) < a.rounds:
        p.error(f"the pool has {a.pool_phantoms + len(a.real_pool)} images for {a.rounds} rounds")
    a.train_timeout_s = a.minutes * 60 + 30 * 60
    return a


FULL = {
    "rounds": 3,
    "minutes": 2.0,
    "pool_phantoms": 4,
    "real_pool": list(REAL_POOL),
    "test_phantoms": 4,
    "real_test": list(REAL_TEST),
    "spacing": 2.5,
    "uncertainty_ensemble": 4,
    "structures": list(STRUCTURES),
    "docs_png": ROOT / "docs" / "active_learning.png",
}
QUICK = {
    "rounds": 1,
    "minutes": 0.1,
    "pool_phantoms": 2,
    "real_pool": [],
    "test_phantoms": 1,
    "real_test": [],
    "spacing": 6.0,
    "uncertainty_ensemble": 1,
    "structures": ["liver", "spleen"],
    "docs_png": None,
}


def write_report(record: dict, a: argparse.Namespace) -> None:
    """The verdicts (into the record), then JSON, markdown and the plot under ``--out`` (and ``--docs-png``)."""
    record["verdict"] = verdicts(record["strategies"])
    (a.out / "active_learning.json").write_text(json.dumps(record, indent=2))
    (a.out / "active_learning.partial.json").unlink(missing_ok=True)
    (a.out / "active_learning.md").write_text(markdown(record))
    plot(record, [a.out / "active_learning.png", *([a.docs_png] if a.docs_png else [])])
    print(markdown(record))


def main(argv: list[str] | None = None) -> int:
    """Entry point: run (or read ``--from-json``), then write JSON, markdown and the plot."""
    a = parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    if a.from_json:
        write_report(json.loads(a.from_json.read_text()), a)
        return 0
    torch.set_num_threads(a.threads)  # the run's own models are scored here while the server waits
    with tempfile.TemporaryDirectory(prefix="active_learning_") as tmp:
        a.work = Path(tmp)
        record = run(a)
    write_report(record, a)
    print(f"wrote {a.out} in {record['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
