"""Train TextDiffSeg: ``python -m textdiffseg.train --data DIR --out RUN`` (the command line of ``train_loop``).

Reads an MSD/phantom folder (``dataset.json``) or a KiTS folder and writes ``RUN/model.pt`` (for serving and
evaluation), ``RUN/last.pt`` (with optimizer state, for ``--resume``) and ``RUN/history.jsonl``; see
:func:`textdiffseg.train_loop.run_training`. Runs unchanged under ``torchrun`` (see ``textdiffseg.distributed``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from textdiffseg.checkpoint import CheckpointError
from textdiffseg.config import PRESETS
from textdiffseg.data.folders import DatasetFolderError
from textdiffseg.text.encoder import TextEncoderError
from textdiffseg.train_loop import ABLATIONS, TrainOptions, run_training


def parse_args(argv: list[str] | None = None) -> TrainOptions:
    """Parse CLI flags into :class:`TrainOptions` (errors exit with a one-line message)."""
    p = argparse.ArgumentParser(prog="python -m textdiffseg.train", description=__doc__.split("\n")[0])
    p.add_argument(
        "--data",
        required=True,
        type=Path,
        action="append",
        help="MSD/phantom folder (dataset.json), KiTS folder, or a case list .json (save_case_list); repeatable "
        "to mix sources (e.g. real and phantom cases)",
    )
    p.add_argument(
        "--data-weight",
        type=float,
        action="append",
        default=[],
        help="sampling weight of each --data source, in order (default: every case alike)",
    )
    p.add_argument("--exclude-case", action="append", default=[], help="leave out this case id (repeatable)")
    p.add_argument(
        "--windows",
        choices=("single", "multi"),
        help="input HU windows: single (-200..300, the default) or multi (+ wide -1000..1000 and bone 300..1500); "
        "with --init-from, multi widens a single-window model (new input weights start at zero)",
    )
    p.add_argument("--augment", action="store_true", help="MONAI random augmentation of every patch (no flips)")
    p.add_argument(
        "--foreground-fraction",
        type=float,
        default=0.0,
        help="share of patches centred on a structure of the case, prompted first (nnU-Net uses 0.33; default 0)",
    )
    p.add_argument("--max-minutes", type=float, help="stop after this many minutes even if --steps are not done")
    p.add_argument(
        "--lr-schedule",
        choices=("constant", "cosine"),
        default="constant",
        help="constant, or cosine: 3%% warm-up then decay to 5%% of --lr over the run (steps or --max-minutes)",
    )
    p.add_argument(
        "--click-fraction",
        type=float,
        default=0.0,
        help="share of prompts trained with 1-5 clicks simulated from the model's own errors (adds a click branch "
        "to a model without one, e.g. with --init-from; default 0)",
    )
    p.add_argument(
        "--stage",
        choices=("whole", "fine"),
        default="whole",
        help="whole: a whole-CT model; fine: the zoom-in fine stage (1.5 mm in-plane, given the coarse result; "
        "start it from a whole-CT model with --init-from, join the two with python -m textdiffseg.fine_stage)",
    )
    p.add_argument(
        "--tune",
        choices=("all", "prompts"),
        default="all",
        help="all: train every weight; prompts: teach an --init-from model the structures it does not know with "
        "learned prompts, the network frozen (what it knew stays exactly as it was)",
    )
    p.add_argument(
        "--prior-miss-rate",
        type=float,
        default=0.2,
        help="fine stage: share of present structures trained without a coarse prior (high for what the coarse pass "
        "rarely finds, such as lesions; default 0.2)",
    )
    p.add_argument("--workers", type=int, default=0, help="background processes drawing patches (GPU runs; default 0)")
    p.add_argument("--out", required=True, type=Path, help="run folder (created): model.pt, last.pt, history.jsonl")
    p.add_argument("--steps", type=int, default=2000, help="optimisation steps in total (default 2000)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="default", help="model size")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    p.add_argument(
        "--text-encoder",
        default="default",
        help="'default' (packaged all-MiniLM-L6-v2), a local BERT folder, or a cached HF name",
    )
    p.add_argument("--vocabulary", help="prompt vocabulary JSON (default: the built-in one)")
    p.add_argument("--prompts-per-volume", type=int, default=4, help="prompts per patch and step (default 4)")
    p.add_argument(
        "--global-batch",
        type=int,
        help="patches per step over all ranks (default: one per rank); same value = same training",
    )
    p.add_argument("--negative-fraction", type=float, default=0.25, help="share of absent-structure prompts")
    p.add_argument(
        "--structure",
        action="append",
        default=[],
        help="train only on this structure name (repeatable; default: all annotated)",
    )
    p.add_argument(
        "--structures-file",
        type=Path,
        help="train only on the structure names of this file, one a line ('#' starts a comment; added to "
        "--structure), e.g. scripts/gpu_recipe/structures.txt",
    )
    p.add_argument(
        "--exclusion-fraction",
        type=float,
        default=0.0,
        help="share of prompts asking for a structure a case does not annotate, supervised only on its voxels of "
        "other, disjoint structures (partial labels: 'liver' is not in a chest CT's labelled lungs; default 0)",
    )
    p.add_argument(
        "--scan-range-prob",
        type=float,
        default=0.0,
        help="with --augment: share of patches in which the scan ends (air beyond a random slice, nothing labelled), "
        "so organs are found without the whole abdomen in view (default 0)",
    )
    p.add_argument(
        "--tissue-prob",
        type=float,
        default=0.0,
        help="with --augment: share of patches given another scan's tissue look (per-structure HU, non-contrast, "
        "arterial or late enhancement, little fat; textdiffseg.tissue_augment), default 0",
    )
    p.add_argument(
        "--forget-untrained",
        action="store_true",
        help="the checkpoint records only the structures this run trains, not those its --init-from model knew "
        "(a model narrowed with --structure loses the rest; their prompts then get an empty mask and a warning)",
    )
    p.add_argument(
        "--bce-foreground-floor",
        type=float,
        default=None,
        help="set the model's ModelConfig.bce_foreground_floor (recorded in the checkpoint; default: the preset's or "
        "the --init-from model's, 0 = plain BCE): the least weight of a structure's voxels in the mask's BCE, so "
        "small targets such as tumours keep pulling once the logits say 'nowhere' (0.5: as much as the background)",
    )
    p.add_argument(
        "--ablation",
        action="append",
        choices=sorted(ABLATIONS),
        default=[],
        help="switch off a module, as in the paper's ablations (repeatable)",
    )
    p.add_argument("--init-from", type=Path, help="start from this checkpoint's weights (fine-tuning)")
    p.add_argument("--resume", action="store_true", help="continue from RUN/last.pt if it exists")
    p.add_argument("--save-every", type=int, default=200, help="write RUN/last.pt every N steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (torchrun picks cuda:LOCAL_RANK)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    a = p.parse_args(argv)
    if (
        a.steps < 1
        or a.prompts_per_volume < 1
        or a.save_every < 1
        or (a.global_batch is not None and a.global_batch < 1)
    ):
        p.error("--steps, --prompts-per-volume, --global-batch and --save-every must be at least 1")
    if (a.max_minutes is not None and a.max_minutes <= 0) or a.workers < 0:
        p.error("--max-minutes must be positive and --workers at least 0")
    if not 0.0 <= a.negative_fraction <= 1.0:
        p.error("--negative-fraction must be between 0 and 1")
    if not 0.0 <= a.foreground_fraction <= 1.0:
        p.error("--foreground-fraction must be between 0 and 1")
    if not 0.0 <= a.click_fraction <= 1.0:
        p.error("--click-fraction must be between 0 and 1")
    if a.bce_foreground_floor is not None and not 0.0 <= a.bce_foreground_floor <= 1.0:
        p.error("--bce-foreground-floor must be between 0 and 1")
    if not 0.0 <= a.scan_range_prob <= 1.0:
        p.error("--scan-range-prob must be between 0 and 1")
    if not 0.0 <= a.tissue_prob <= 1.0:
        p.error("--tissue-prob must be between 0 and 1")
    if a.tissue_prob and not a.augment:
        p.error("--tissue-prob changes augmented patches: add --augment")
    if not 0.0 <= a.exclusion_fraction <= 1.0:
        p.error("--exclusion-fraction must be between 0 and 1")
    if not 0.0 <= a.prior_miss_rate <= 1.0:
        p.error("--prior-miss-rate must be between 0 and 1")
    if a.tune == "prompts" and a.init_from is None and not a.resume:
        p.error("--tune prompts teaches a trained model new structures: give it --init-from")
    if a.structures_file is not None:
        try:
            a.structure += read_structure_list(a.structures_file)
        except (OSError, ValueError) as err:
            p.error(f"--structures-file: {err}")
    if a.data_weight and (len(a.data_weight) != len(a.data) or min(a.data_weight) < 0 or sum(a.data_weight) <= 0):
        p.error("give one non-negative --data-weight per --data (with a positive sum)")
    return TrainOptions(
        data=a.data[0] if len(a.data) == 1 else tuple(a.data),
        out=a.out,
        steps=a.steps,
        preset=a.preset,
        lr=a.lr,
        text_encoder=a.text_encoder,
        vocabulary=a.vocabulary,
        prompts_per_volume=a.prompts_per_volume,
        global_batch=a.global_batch,
        negative_fraction=a.negative_fraction,
        structures=tuple(a.structure),
        forget_untrained=a.forget_untrained,
        bce_foreground_floor=a.bce_foreground_floor,
        exclusion_fraction=a.exclusion_fraction,
        scan_range_prob=a.scan_range_prob,
        tissue_prob=a.tissue_prob,
        ablations=tuple(a.ablation),
        init_from=a.init_from,
        resume=a.resume,
        save_every=a.save_every,
        seed=a.seed,
        device=a.device,
        progress=not a.no_progress,
        data_weights=tuple(a.data_weight),
        exclude_cases=tuple(a.exclude_case),
        windows=a.windows,
        augment=a.augment,
        foreground_fraction=a.foreground_fraction,
        max_minutes=a.max_minutes,
        lr_schedule=a.lr_schedule,
        workers=a.workers,
        click_fraction=a.click_fraction,
        stage=a.stage,
        prior_miss_rate=a.prior_miss_rate,
        tune=a.tune,
    )


def read_structure_list(path: Path) -> list[str]:
    """The structure names of a text file, one a line; blank lines and text after ``#`` are skipped.

    Raises:
        OSError: the file cannot be read.
        ValueError: it names no structure, or one twice.
    """
    names = [line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    names = [name for name in names if name]
    if not names:
        raise ValueError(f"{path} names no structure")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"{path} names {twice} more than once")
    return names


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: prints a JSON summary; bad input ends with a one-line ``error:`` message and exit code 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    opts = parse_args(argv)
    try:
        summary = run_training(opts)
    except (DatasetFolderError, TextEncoderError, CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
