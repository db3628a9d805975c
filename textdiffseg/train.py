"""Train TextDiffSeg: ``python -m textdiffseg.train --data DIR --out RUN``.

Reads an MSD/phantom folder (``dataset.json``) or a KiTS folder, samples prompts from the vocabulary (paraphrases and
absent-structure negatives), optimises the joint loss and writes ``RUN/model.pt`` (for serving and evaluation) and
``RUN/last.pt`` (with optimizer state, for ``--resume``). Progress is shown with tqdm and logged to
``RUN/history.jsonl``. Runs unchanged under ``torchrun`` (see ``textdiffseg.distributed``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from textdiffseg.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from textdiffseg.config import ModelConfig, preset_config
from textdiffseg.data.folders import DatasetFolderError, LabelledCase, load_case_list, load_folder
from textdiffseg.data.vocabulary import PromptVocabulary
from textdiffseg.networks.model import TextDiffSeg
from textdiffseg.text.encoder import TextEncoder, TextEncoderError
from textdiffseg.training import PromptedPatchSampler, Trainer, mean_terms, prepare_cases

logger = logging.getLogger(__name__)

ABLATIONS = {
    "no-text-fusion": "use_text_fusion",
    "no-image-encoder": "use_image_encoder",
    "no-label-encoder": "use_label_encoder",
}


@dataclass
class TrainOptions:
    """What a training run does (the CLI flags, also used by the MONAI Label train task)."""

    data: Path  # a dataset folder, or a case list JSON (textdiffseg.data.folders.save_case_list)
    out: Path
    steps: int = 2000
    preset: str = "default"
    lr: float = 1e-3
    text_encoder: str = "default"
    vocabulary: str | None = None
    prompts_per_volume: int = 4
    global_batch: int | None = None  # patches per step over all ranks; default: one per rank
    negative_fraction: float = 0.25
    structures: tuple[str, ...] = ()
    ablations: tuple[str, ...] = ()
    init_from: Path | None = None
    resume: bool = False
    save_every: int = 200
    seed: int = 0
    device: str = "cpu"
    progress: bool = True


def build_config(opts: TrainOptions, encoder: TextEncoder) -> ModelConfig:
    """The model config for a fresh run: preset, ablation switches and the text encoder's identity."""
    config = preset_config(opts.preset)
    switches = {ABLATIONS[a]: False for a in opts.ablations}
    return replace(
        config,
        text_encoder=encoder.name,
        text_hidden_size=encoder.hidden_size,
        text_fingerprint=encoder.fingerprint,
        **switches,
    )


def _initial_model(opts: TrainOptions, encoder: TextEncoder) -> tuple[TextDiffSeg, dict]:
    """Resume from ``out/last.pt``, start from ``init_from`` (fine-tuning), or build a fresh model."""
    last = opts.out / "last.pt"
    if opts.resume and last.is_file():
        model, extra = load_checkpoint(last, encoder)
        logger.info("resuming %s at step %s", last, extra.get("step", 0))
        return model, extra
    if opts.init_from is not None:
        model, _ = load_checkpoint(opts.init_from, encoder)
        logger.info("fine-tuning from %s", opts.init_from)
        return model, {}
    torch.manual_seed(opts.seed)
    return TextDiffSeg(build_config(opts, encoder)), {}


def run_training(
    opts: TrainOptions, encoder: TextEncoder | None = None, cases: list[LabelledCase] | None = None
) -> dict:
    """Train and write the run folder; returns a summary (steps, final loss terms, seconds, paths).

    ``cases`` replaces reading ``opts.data`` (the MONAI Label train task passes the datastore's labelled images).
    """
    from textdiffseg.distributed import DistributedContext

    dist = DistributedContext.from_environment(opts.device)
    encoder = encoder or TextEncoder(opts.text_encoder, device=str(dist.device))
    vocabulary = PromptVocabulary.load(opts.vocabulary)
    model, extra = _initial_model(opts, encoder)
    if cases is None:
        cases = load_case_list(opts.data) if opts.data.suffix == ".json" else load_folder(opts.data)
    prepared = prepare_cases(cases, model.config)
    global_batch = opts.global_batch or dist.world_size
    if global_batch % dist.world_size:
        raise ValueError(f"--global-batch {global_batch} is not a multiple of the {dist.world_size} ranks")
    trainer = Trainer(
        model, encoder, lr=opts.lr, device=str(dist.device), seed=opts.seed, rank=dist.rank, world_size=dist.world_size
    )
    trainer.network = dist.wrap(model)
    if extra.get("optimizer"):
        trainer.optimizer.load_state_dict(extra["optimizer"])
        trainer.state.step = int(extra.get("step", 0))
        trainer.generator.manual_seed(opts.seed * 1000 + trainer.state.step)
    sampler = PromptedPatchSampler(
        prepared,
        vocabulary,
        model.config.roi_size,
        opts.prompts_per_volume,
        opts.negative_fraction,
        seed=opts.seed * 1000 + trainer.state.step,  # the same on every rank: each keeps its share of a batch
        structures=opts.structures or None,
    )
    if dist.is_main:
        opts.out.mkdir(parents=True, exist_ok=True)
    history_path = opts.out / "history.jsonl"
    start, window = time.perf_counter(), []
    progress = _progress(opts, trainer.state.step, dist.is_main)

    def save(name: str, with_optimizer: bool) -> None:
        state = {"step": trainer.state.step}
        if with_optimizer:
            state["optimizer"] = trainer.optimizer.state_dict()
        if dist.is_main:
            save_checkpoint(opts.out / name, model, state)

    while trainer.state.step < opts.steps:
        terms = dist.average(trainer.step([sampler.sample() for _ in range(global_batch)]))
        window.append(terms)
        progress.update(1)
        progress.set_postfix({k: f"{v:.3f}" for k, v in terms.items()})
        if dist.is_main:
            with history_path.open("a") as handle:
                handle.write(json.dumps({"step": trainer.state.step, **terms}) + "\n")
        if trainer.state.step % opts.save_every == 0:
            save("last.pt", with_optimizer=True)
    progress.close()
    save("last.pt", with_optimizer=True)
    save("model.pt", with_optimizer=False)
    dist.barrier()
    summary = {
        "steps": trainer.state.step,
        "seconds": round(time.perf_counter() - start, 1),
        "final": mean_terms(window[-20:]),
        "model": str(opts.out / "model.pt"),
        "world_size": dist.world_size,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    dist.close()
    return summary


def _progress(opts: TrainOptions, initial: int, is_main: bool):  # noqa: ANN202 - tqdm's type is private
    from tqdm import tqdm

    return tqdm(
        total=opts.steps,
        initial=initial,
        disable=not (opts.progress and is_main),
        desc="train",
        dynamic_ncols=True,
        file=sys.stderr,
    )


def parse_args(argv: list[str] | None = None) -> TrainOptions:
    """Parse CLI flags into :class:`TrainOptions` (errors exit with a one-line message)."""
    p = argparse.ArgumentParser(prog="python -m textdiffseg.train", description=__doc__.split("\n")[0])
    p.add_argument(
        "--data",
        required=True,
        type=Path,
        help="MSD/phantom folder (dataset.json), KiTS folder, or a case list .json (save_case_list)",
    )
    p.add_argument("--out", required=True, type=Path, help="run folder (created): model.pt, last.pt, history.jsonl")
    p.add_argument("--steps", type=int, default=2000, help="optimisation steps in total (default 2000)")
    p.add_argument("--preset", choices=("tiny", "small", "default"), default="default", help="model size")
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
    if not 0.0 <= a.negative_fraction <= 1.0:
        p.error("--negative-fraction must be between 0 and 1")
    return TrainOptions(
        data=a.data,
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
        ablations=tuple(a.ablation),
        init_from=a.init_from,
        resume=a.resume,
        save_every=a.save_every,
        seed=a.seed,
        device=a.device,
        progress=not a.no_progress,
    )


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
