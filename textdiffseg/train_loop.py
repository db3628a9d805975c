"""A training run: options, the model to start from, the step loop, checkpoints and the history file.

``run_training`` is what the CLI (``python -m textdiffseg.train``) and the MONAI Label train task call. It reads an
MSD/phantom folder (``dataset.json``), a KiTS folder or given cases, samples prompts from the vocabulary (paraphrases
and absent-structure negatives), optimises the joint loss and writes ``RUN/model.pt`` (for serving and evaluation)
and ``RUN/last.pt`` (with optimizer state, for ``--resume``). Progress is shown with tqdm and logged to
``RUN/history.jsonl``. Runs unchanged under ``torchrun`` (see ``textdiffseg.distributed``).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from textdiffseg.atomic_files import copy_atomic
from textdiffseg.augment import PatchAugmenter
from textdiffseg.checkpoint import load_checkpoint, load_fine_stage, read_config, save_checkpoint
from textdiffseg.click_branch import CLICK_CHANNELS, add_click_branch
from textdiffseg.coarse_prior import MISS_RATE
from textdiffseg.config import FINE_STAGE, MULTI_WINDOWS, ModelConfig, preset_config
from textdiffseg.data.folders import LabelledCase, load_case_list, load_folder
from textdiffseg.data.vocabulary import PromptVocabulary
from textdiffseg.fine_stage import as_fine_stage
from textdiffseg.networks.model import TextDiffSeg
from textdiffseg.prompt_match import record_trained_structures, trained_structures
from textdiffseg.prompt_tuning import TUNE_MODES, new_structures, prompt_parameters, with_learned_prompts
from textdiffseg.text.encoder import TextEncoder
from textdiffseg.train_data import PromptedPatchSampler, prepare_cases
from textdiffseg.train_progress import EpochMonitor, TrainHooks
from textdiffseg.train_schedule import LearningRateSchedule, patch_stream
from textdiffseg.train_step import Trainer, mean_terms

logger = logging.getLogger(__name__)

ABLATIONS = {
    "no-text-fusion": "use_text_fusion",
    "no-image-encoder": "use_image_encoder",
    "no-label-encoder": "use_label_encoder",
}


@dataclass
class TrainOptions:
    """What a training run does (the CLI flags, also used by the MONAI Label train task)."""

    data: Path | tuple[Path, ...]  # dataset folder(s) or case list JSON(s) (textdiffseg.data.folders.save_case_list)
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
    forget_untrained: bool = False  # record only this run's structures, not those the --init-from model knew
    bce_foreground_floor: float | None = None  # set ModelConfig.bce_foreground_floor (None: keep the model's)
    exclusion_fraction: float = 0.0  # share of prompts for structures a case does not annotate (partial labels)
    scan_range_prob: float = 0.0  # with augment: share of patches whose scan ends inside them (air beyond)
    tissue_prob: float = 0.0  # with augment: share of patches given another scan's tissue look (tissue_augment)
    ablations: tuple[str, ...] = ()
    init_from: Path | None = None
    resume: bool = False
    save_every: int = 200
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    data_weights: tuple[float, ...] = ()  # sampling weight of each data source (default: every case alike)
    exclude_cases: tuple[str, ...] = ()  # case ids left out (e.g. a held-out patient)
    windows: str | None = None  # "single" (one soft-tissue window) or "multi" (MULTI_WINDOWS); None: preset's
    augment: bool = False  # MONAI random augmentation of every patch (textdiffseg.augment)
    foreground_fraction: float = 0.0  # share of patches centred on a prompted structure
    max_minutes: float | None = None  # stop after this much wall time even if ``steps`` are not done
    lr_schedule: str = "constant"  # "constant" or "cosine" (warm-up, then cosine decay over steps / max_minutes)
    workers: int = 0  # processes drawing patches in the background (0: drawn in the training process)
    steps_per_epoch: int = 100  # steps between progress reports (log line, hooks, validation when due)
    click_fraction: float = 0.0  # share of prompts trained with simulated clicks (adds the click branch if missing)
    stage: str = "whole"  # "whole" (a whole-CT model) or "fine" (the zoom-in fine stage, textdiffseg.fine_stage)
    prior_miss_rate: float = MISS_RATE  # fine stage: share of present structures trained without a coarse prior
    tune: str = "all"  # "all" (every weight) or "prompts" (learned prompts of new structures only; needs init_from)


def _extra_windows(windows: str | None, default: tuple) -> tuple:
    if windows is None:
        return default
    if windows not in ("single", "multi"):
        raise ValueError(f"windows must be 'single' or 'multi', not {windows!r}")
    return MULTI_WINDOWS if windows == "multi" else ()


def widen_input(model: TextDiffSeg, extra_windows: tuple) -> TextDiffSeg:
    """The same model with other input windows: weights of channels it did not have start at zero, so a widened
    one-channel model computes exactly what it computed before until training moves them."""
    if tuple(model.config.extra_windows) == tuple(extra_windows):
        return model
    wide = TextDiffSeg(replace(model.config, extra_windows=tuple(extra_windows), extra=dict(model.config.extra)))
    old = model.state_dict()
    state = {}
    for key, value in wide.state_dict().items():
        src = old[key]
        if src.shape != value.shape:
            if src.dim() < 2 or src.shape[0] != value.shape[0] or src.shape[2:] != value.shape[2:]:
                raise ValueError(f"cannot widen {key}: {tuple(src.shape)} -> {tuple(value.shape)}")
            grown = torch.zeros_like(value)
            n = min(src.shape[1], value.shape[1])
            grown[:, :n] = src[:, :n]
            src = grown
        state[key] = src
    wide.load_state_dict(state)
    return wide


def build_config(opts: TrainOptions, encoder: TextEncoder) -> ModelConfig:
    """The model config for a fresh run: preset, ablation switches and the text encoder's identity."""
    config = preset_config(opts.preset)
    config = replace(config, extra_windows=_extra_windows(opts.windows, config.extra_windows))
    if opts.stage == "fine":
        config = replace(config, **FINE_STAGE)  # type: ignore[arg-type]
    switches = {ABLATIONS[a]: False for a in opts.ablations}
    return replace(
        config,
        click_channels=CLICK_CHANNELS if opts.click_fraction else 0,
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
        model = widen_input(model, _extra_windows(opts.windows, model.config.extra_windows))
        model = as_fine_stage(model) if opts.stage == "fine" else model
        return (add_click_branch(model) if opts.click_fraction else model), {}
    torch.manual_seed(opts.seed)
    return TextDiffSeg(build_config(opts, encoder)), {}


def _with_new_prompts(
    opts: TrainOptions, model: TextDiffSeg, structures: list[str], encoder: TextEncoder
) -> TextDiffSeg:
    """``--tune prompts``: the model to start from with a learned prompt for each structure it does not know."""
    if opts.init_from is None:
        raise ValueError("--tune prompts teaches a trained model new structures: it needs --init-from")
    new = new_structures(model, structures)
    if not new:
        raise ValueError(
            f"--tune prompts: the model already knows every structure it would train ({', '.join(structures)}); "
            "correcting known structures needs --tune all"
        )
    logger.info("learning prompts for %s; the network stays frozen", ", ".join(new))
    return with_learned_prompts(model, new, encoder)


def load_sources(opts: TrainOptions) -> tuple[list[LabelledCase], list[float] | None]:
    """The cases of every data source (less ``exclude_cases``) and, with ``data_weights``, each case's sampling
    weight (its source's weight shared among the source's cases)."""
    sources = [opts.data] if isinstance(opts.data, (str, Path)) else list(opts.data)
    if opts.data_weights and len(opts.data_weights) != len(sources):
        raise ValueError(f"{len(opts.data_weights)} data weights for {len(sources)} data sources")
    cases: list[LabelledCase] = []
    weights: list[float] = []
    for k, source in enumerate(map(Path, sources)):
        found = load_case_list(source) if source.suffix == ".json" else load_folder(source)
        found = [c for c in found if c.case_id not in opts.exclude_cases]
        if not found:
            raise ValueError(f"no training cases left in {source}")
        cases += found
        weight = opts.data_weights[k] if opts.data_weights else 1.0
        weights += [weight / len(found)] * len(found)
    return cases, (weights if opts.data_weights else None)


def run_training(
    opts: TrainOptions,
    encoder: TextEncoder | None = None,
    cases: list[LabelledCase] | None = None,
    hooks: TrainHooks | None = None,
    case_weights: list[float] | None = None,
) -> dict:
    """Train and write the run folder; returns a summary (steps, final loss terms, seconds, paths).

    ``cases`` replaces reading ``opts.data`` (the MONAI Label train task passes the datastore's labelled images),
    with ``case_weights`` (one per case) weighting how often each is drawn. ``hooks``
    (:class:`textdiffseg.train_progress.TrainHooks`) get a report at every epoch end; with ``hooks.validate`` the
    best scoring weights become ``model.pt`` (the last ones stay in ``last.pt``).
    """
    from textdiffseg.distributed import DistributedContext

    if opts.tune not in TUNE_MODES:
        raise ValueError(f"tune must be one of {TUNE_MODES}, not {opts.tune!r}")
    dist = DistributedContext.from_environment(opts.device)
    encoder = encoder or TextEncoder(opts.text_encoder, device=str(dist.device))
    vocabulary = PromptVocabulary.load(opts.vocabulary)
    model, extra = _initial_model(opts, encoder)
    if opts.bce_foreground_floor is not None:  # a loss setting: the weights and what the model computes stay
        model.config.bce_foreground_floor = opts.bce_foreground_floor
    if cases is None:
        cases, case_weights = load_sources(opts)
    prepared = prepare_cases(cases, model.config)
    global_batch = opts.global_batch or dist.world_size
    if global_batch % dist.world_size:
        raise ValueError(f"--global-batch {global_batch} is not a multiple of the {dist.world_size} ranks")
    if opts.click_fraction and not model.takes_clicks:  # resumed from a run that trained without clicks
        model = add_click_branch(model)
        extra = {k: v for k, v in extra.items() if k != "optimizer"}  # its parameter list has changed
    resumed = opts.resume and (opts.out / "last.pt").is_file()
    first_step = int(extra.get("step", 0)) if extra.get("optimizer") else 0
    sampler = PromptedPatchSampler(
        prepared,
        vocabulary,
        model.config.roi_size,
        opts.prompts_per_volume,
        opts.negative_fraction,
        seed=opts.seed * 1000 + first_step,  # the same on every rank: each keeps its share of a batch
        structures=opts.structures or None,
        case_weights=case_weights,
        foreground_fraction=opts.foreground_fraction,
        exclusion_fraction=opts.exclusion_fraction,
        augment=PatchAugmenter(
            model.config.input_windows,
            seed=opts.seed * 1000 + first_step + 1,
            scan_range_prob=opts.scan_range_prob,
            tissue_prob=opts.tissue_prob,
        )
        if opts.augment
        else None,
    )
    parameters = None
    if opts.tune == "prompts":
        model = model if resumed else _with_new_prompts(opts, model, sampler.prompted_structures, encoder)
        parameters = prompt_parameters(model, opts.lr)
    trainer = Trainer(
        model,
        encoder,
        lr=opts.lr,
        device=str(dist.device),
        seed=opts.seed,
        rank=dist.rank,
        world_size=dist.world_size,
        click_fraction=opts.click_fraction,
        prior_miss_rate=opts.prior_miss_rate,
        parameters=parameters,
        vocabulary=vocabulary,
    )
    trainer.network = dist.wrap(model)
    if extra.get("optimizer"):
        trainer.optimizer.load_state_dict(extra["optimizer"])
        trainer.state.step = first_step
        trainer.generator.manual_seed(opts.seed * 1000 + trainer.state.step)
        trainer.clicks.rng.seed(opts.seed * 1000 + trainer.state.step + 1)
    # The checkpoint records what it learned (textdiffseg.prompt_match): a fresh model the sampled structures, a
    # resumed or fine-tuned one those it knew before as well, unless the run says it forgets them.
    # A fine stage made from a whole-CT model has learned only what it is trained on here.
    made_fine = opts.init_from is not None and opts.stage == "fine" and not read_config(opts.init_from).prior_channels
    fresh = opts.forget_untrained or (not resumed and (opts.init_from is None or made_fine))
    record_trained_structures(
        model.config, [*(() if fresh else trained_structures(model.config)), *sampler.prompted_structures]
    )
    if dist.is_main:
        opts.out.mkdir(parents=True, exist_ok=True)
    history_path = opts.out / "history.jsonl"
    start, window = time.perf_counter(), []
    budget_s = None if opts.max_minutes is None else 60.0 * opts.max_minutes
    schedule = LearningRateSchedule(trainer.optimizer, opts.lr, opts.lr_schedule, opts.steps, budget_s)
    patches = patch_stream(sampler, opts.workers)
    progress = _progress(opts, trainer.state.step, dist.is_main)
    hooks = hooks or TrainHooks()

    # Retraining a whole-CT model keeps the zoom-in fine stage its checkpoint holds (it is not trained here).
    started_from = opts.out / "last.pt" if resumed else opts.init_from
    kept_fine_stage = load_fine_stage(started_from) if started_from and not model.takes_prior else None

    def save(name: str, with_optimizer: bool) -> None:
        state = {"step": trainer.state.step}
        if with_optimizer:
            state["optimizer"] = trainer.optimizer.state_dict()
        if dist.is_main:
            save_checkpoint(opts.out / name, model, state, fine_stage=kept_fine_stage)

    monitor = EpochMonitor(
        opts.steps,
        opts.steps_per_epoch,
        budget_s,
        hooks if dist.is_main else TrainHooks(),
        save_best=lambda: save("best.pt", with_optimizer=False),
        log=logger.info if dist.is_main else logger.debug,
        first_step=trainer.state.step,
    )
    stopped_by_time = False
    while trainer.state.step < opts.steps:
        elapsed = time.perf_counter() - start
        if budget_s is not None and dist.agree(elapsed >= budget_s):
            stopped_by_time = True
            break
        schedule.update(trainer.state.step, elapsed)
        terms = dist.average(trainer.step([next(patches) for _ in range(global_batch)]))
        window.append(terms)  # loss terms only: the summary's "final" averages them
        progress.update(1)
        progress.set_postfix({k: f"{v:.3f}" for k, v in terms.items()})
        if dist.is_main:
            with history_path.open("a") as handle:
                handle.write(json.dumps({"step": trainer.state.step, **terms, "lr": schedule.current}) + "\n")
        if trainer.state.step % opts.save_every == 0:
            save("last.pt", with_optimizer=True)
        monitor.after_step(trainer.state.step, terms["loss"], schedule.current, time.perf_counter() - start, model)
    progress.close()
    monitor.finish(trainer.state.step, schedule.current, time.perf_counter() - start, model)
    save("last.pt", with_optimizer=True)
    if monitor.best_step is None:
        save("model.pt", with_optimizer=False)
    elif dist.is_main:
        copy_atomic(opts.out / "best.pt", opts.out / "model.pt")
    dist.barrier()
    summary = {
        "steps": trainer.state.step,
        "stopped_by_time": stopped_by_time,
        "seconds": round(time.perf_counter() - start, 1),
        "final": mean_terms(window[-20:]),
        "model": str(opts.out / "model.pt"),
        "world_size": dist.world_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "epochs": monitor.total_epochs,
    }
    if monitor.best_step is not None:
        summary.update(best_val_dice=monitor.best_val, best_step=monitor.best_step, last_val_dice=monitor.last_val)
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
