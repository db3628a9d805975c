"""Launch ``textdiffseg.train`` on several GPUs with ``torchrun`` from Python (what the MONAI Label trainer does).

The options travel as the CLI flags of ``python -m textdiffseg.train`` and the cases as a case list JSON, so the
workers run exactly the code a user runs by hand with ``torchrun``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from textdiffseg.data.folders import LabelledCase, save_case_list
from textdiffseg.train_loop import TrainOptions

logger = logging.getLogger(__name__)


class LaunchError(RuntimeError):
    """The distributed training job failed; the message holds the end of its output."""


def options_to_argv(opts: TrainOptions) -> list[str]:
    """The ``python -m textdiffseg.train`` flags that reproduce ``opts`` (``parse_args`` is the inverse)."""
    sources = [opts.data] if isinstance(opts.data, (str, Path)) else list(opts.data)
    argv = [
        *(arg for source in sources for arg in ("--data", str(source))),
        "--out",
        str(opts.out),
        "--steps",
        str(opts.steps),
        "--preset",
        opts.preset,
        "--lr",
        repr(opts.lr),
        "--text-encoder",
        opts.text_encoder,
        "--prompts-per-volume",
        str(opts.prompts_per_volume),
        "--negative-fraction",
        repr(opts.negative_fraction),
        "--save-every",
        str(opts.save_every),
        "--seed",
        str(opts.seed),
        "--device",
        opts.device,
    ]
    if opts.vocabulary:
        argv += ["--vocabulary", str(opts.vocabulary)]
    if opts.global_batch:
        argv += ["--global-batch", str(opts.global_batch)]
    for name in opts.structures:
        argv += ["--structure", name]
    for name in opts.ablations:
        argv += ["--ablation", name]
    if opts.init_from is not None:
        argv += ["--init-from", str(opts.init_from)]
    if opts.resume:
        argv.append("--resume")
    if not opts.progress:
        argv.append("--no-progress")
    for weight in opts.data_weights:
        argv += ["--data-weight", repr(weight)]
    for case in opts.exclude_cases:
        argv += ["--exclude-case", case]
    if opts.windows:
        argv += ["--windows", opts.windows]
    if opts.augment:
        argv.append("--augment")
    if opts.foreground_fraction:
        argv += ["--foreground-fraction", repr(opts.foreground_fraction)]
    if opts.max_minutes is not None:
        argv += ["--max-minutes", repr(opts.max_minutes)]
    if opts.lr_schedule != "constant":
        argv += ["--lr-schedule", opts.lr_schedule]
    if opts.workers:
        argv += ["--workers", str(opts.workers)]
    if opts.click_fraction:
        argv += ["--click-fraction", repr(opts.click_fraction)]
    if opts.exclusion_fraction:
        argv += ["--exclusion-fraction", repr(opts.exclusion_fraction)]
    if opts.scan_range_prob:
        argv += ["--scan-range-prob", repr(opts.scan_range_prob)]
    if opts.tissue_prob:
        argv += ["--tissue-prob", repr(opts.tissue_prob)]
    if opts.forget_untrained:
        argv.append("--forget-untrained")
    if opts.bce_foreground_floor is not None:
        argv += ["--bce-foreground-floor", repr(opts.bce_foreground_floor)]
    return argv


def torchrun_command(opts: TrainOptions, nproc: int) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc_per_node N -m textdiffseg.train ...``."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "textdiffseg.train",
        *options_to_argv(opts),
    ]


def run_distributed(opts: TrainOptions, cases: list[LabelledCase], nproc: int, timeout_s: float | None = None) -> dict:
    """Train on ``nproc`` local ranks (one per GPU) and return the summary rank 0 prints."""
    opts.out.mkdir(parents=True, exist_ok=True)
    case_list = save_case_list(cases, opts.out / "cases.json")
    command = torchrun_command(replace(opts, data=case_list, progress=False), nproc)
    logger.info("launching %d DDP workers: %s", nproc, " ".join(command))
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=dict(os.environ))
    if done.returncode != 0:
        raise LaunchError(f"distributed training failed ({done.returncode}): {done.stderr[-2000:]}")
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise LaunchError(f"distributed training printed no summary: {done.stdout[-2000:]}")
