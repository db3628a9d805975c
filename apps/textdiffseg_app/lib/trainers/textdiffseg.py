"""``/train/textdiffseg``: fine-tune the served model on the datastore's submitted labels and publish it.

Request (the ``config`` below is what clients show and send back); the defaults are the few-label recipe of
``textdiffseg.finetune`` (see its docstring for why):

* ``name`` (``train_01``): run folder ``model/textdiffseg/<name>/`` (``model.pt`` = the best validated weights or
  the last ones, ``last.pt``, ``history.jsonl``, ``stats_<run>.json``).
* ``pretrained`` (true): start from the checkpoint being served (``model/textdiffseg.pt``, else the shipped
  ``pretrained_textdiffseg.pt``); false, or no checkpoint at all, trains a new ``--conf train_preset`` model.
* ``max_minutes`` (12): the run stops after this much training time (validation included); the learning rate
  follows a cosine over it. Sized so that a run on 2 CPU cores ends within 15 minutes.
* ``max_epochs`` x ``train_steps_per_epoch`` (``--conf train_steps_per_epoch``, 25): a ceiling on the steps, at
  most ``--conf max_train_steps`` (20,000; the default ``max_epochs`` reaches it, so the time decides). An epoch
  ends with a log line and a ``train_stats`` update (step, epoch, elapsed, ETA, loss, validation Dice).
* ``learning_rate`` (1e-4, the cosine's peak), ``augment`` (true), ``foreground_fraction`` (0.5: share of patches
  centred on a labelled structure), ``rehearsal`` (true: phantoms of the structures the served model knows take
  15 % of the patches, and the site's first training image with the served model's own masks of those structures, made
  before the run into ``<name>/teacher/``, another 20 %; with ``--conf rehearsal_data``, the real CT the served
  model was trained on another 20 %).
* ``tune`` (``auto``): what the run trains. ``prompts``: learned prompts of the structures the served model does not
  know (``textdiffseg.prompt_tuning``); the network is frozen, so every answer it gave before stays exactly as it
  was, and nothing is rehearsed. ``all``: every weight, with the rehearsal above. ``auto`` is ``prompts`` when every
  labelled structure is new to the served model, else ``all``. ``prompt_learning_rate`` (1e-2) is the learned
  prompts' peak rate.
* ``device`` (cpu/cuda; cuda falls back to cpu without a GPU).
* ``multi_gpu`` (true): with two or more visible GPUs, one DDP worker per GPU is started with ``torchrun``
  (``textdiffseg.launch``; no validation share then: every labelled image is trained on); with fewer, the log says
  so and training runs in this process.
* ``tracking``/``tracking_uri``: accepted and ignored (no MLflow); the loss history is in ``history.jsonl``.

With two or more labelled images a fifth of them (at least one) is held out for validation. When the run finishes,
the publish gate (``textdiffseg.publish_gate``) scores ``model.pt`` and the served model on the validation share,
on fixed-seed phantoms and on the real CT of ``--conf rehearsal_data``, for the structures the served model knew;
only if none of those drops by more than ``--conf publish_tolerance`` (0.02 Dice) is ``model.pt`` published
atomically to ``model/textdiffseg.pt`` (the next ``/infer`` serves it); otherwise the served model stays, and
``train_stats`` (``published: null``, ``publish_gate.reason``) and the log say why (``--conf publish_gate false``
publishes every finished run unscored). The stats file is
``model/textdiffseg/train_stats.json`` (``/info``'s ``train_stats``).
Bad input (no final label, a label on another grid than its image, a ``label_info`` naming nothing in its label) ends
the run at once: ``status: ERROR`` with a one-line ``error``, a log line, the served model untouched.
"""

from __future__ import annotations

import copy
import logging
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import torch
from monailabel.interfaces.datastore import Datastore
from monailabel.tasks.train.basic_train import BasicTrainTask, Context
from monailabel.utils.others.generic import device_list

from lib.configs.textdiffseg import MAX_EPOCHS, AppSettings
from lib.trainers.cases import cases_from_datastore
from lib.trainers.run_plan import RunPlan, plan_run
from lib.trainers.train_params import RECIPE, TrainParams, parse_train_params
from lib.trainers.train_stats import TrainStats
from textdiffseg.atomic_files import copy_atomic, write_json_atomic
from textdiffseg.checkpoint import read_config
from textdiffseg.finetune import REGRESSION_CASES, REGRESSION_SEED, known_cases, phantom_set
from textdiffseg.launch import run_distributed
from textdiffseg.model_scores import validation_scorer
from textdiffseg.prompt_match import trained_structures
from textdiffseg.publish_gate import GateDecision, publish_gate
from textdiffseg.text.encoder import TextEncoder
from textdiffseg.train_inputs import check_cases
from textdiffseg.train_loop import TrainOptions, run_training
from textdiffseg.train_progress import TrainHooks

logger = logging.getLogger(__name__)


class TextDiffSegTrainer(BasicTrainTask):
    """Runs ``textdiffseg.train_loop.run_training`` instead of MONAI Label's ignite engine."""

    def __init__(self, settings: AppSettings) -> None:
        super().__init__(
            model_dir=str(settings.model_dir / "textdiffseg"),
            description="Fine-tune TextDiffSeg on the submitted (final) labels",
            tracking=None,
        )
        self.settings = settings
        self._config = {
            "name": "train_01",
            "pretrained": True,
            "device": device_list(),
            "max_minutes": RECIPE.max_minutes,
            "max_epochs": max(1, min(MAX_EPOCHS, settings.max_train_steps // settings.train_steps_per_epoch)),
            "train_steps_per_epoch": settings.train_steps_per_epoch,
            "learning_rate": RECIPE.lr,
            "augment": RECIPE.augment,
            "foreground_fraction": RECIPE.foreground_fraction,
            "rehearsal": True,
            "tune": "auto",
            "prompt_learning_rate": RECIPE.prompt_lr,
            "multi_gpu": True,
            "gpus": "all",
            "tracking": ["None"],
        }

    def check_request(self, request: dict[str, Any]) -> TrainParams:
        """The run a request asks for (config defaults merged in); ``ValueError`` naming the bad key or the step cap.

        ``textdiffseg_server`` calls it before MONAI Label starts the run, so a bad request is a 400 at once.
        """
        req = copy.deepcopy(self._config)
        req.update(copy.deepcopy(request))
        return parse_train_params(
            req, self.settings.train_steps_per_epoch, self.settings.device, self.settings.max_train_steps
        )

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        """Train, publish ``model/textdiffseg.pt`` atomically and return the stats (also saved for ``/info``)."""
        params = self.check_request(request)
        gpus = torch.cuda.device_count() if params.device.startswith("cuda") else 0
        distributed = params.multi_gpu and gpus > 1
        if params.multi_gpu and not distributed:
            logger.info("multi_gpu requested but %d GPU(s) visible: training in one process", gpus)
        if params.tracking.lower() != "none" or request.get("tracking_uri"):
            logger.info("experiment tracking is not used by this trainer; see history.jsonl in the run folder")
        out = Path(self._model_dir) / params.name
        start = time.time()
        run_id = datetime.now().strftime("%Y%m%d_%H%M%S")
        stats = TrainStats(
            Path(self._stats_path),
            name=params.name,
            run_id=run_id,
            start_ts=int(start),
            epoch=0,
            total_epochs=params.max_epochs,
            steps=params.steps,
        )
        try:
            cases = cases_from_datastore(datastore, self.settings.vocabulary)
            check_cases(cases)
            served = self.settings.current_model()
            init_from = served if params.pretrained else None
            plan = (
                plan_run(
                    cases,
                    init_from,
                    params.rehearsal,
                    Path(self._model_dir) / "phantoms",
                    RECIPE,
                    teacher_dir=out / "teacher",
                    real_dir=self.settings.rehearsal_data,
                    device=params.device,
                    vocabulary=self.settings.vocabulary,
                    tune=params.tune,
                )
                if not distributed
                else RunPlan(cases, None, [], site_cases=len(cases))
            )
            stats.update(cases=len(cases), **plan.as_stats())
            options = self._options(params, out, init_from, run_id, plan)
            if distributed:
                summary = run_distributed(options, cases, nproc=gpus)
            else:
                encoder = TextEncoder(options.text_encoder, device=params.device)
                validate = (
                    validation_scorer(encoder, plan.validation, params.device, self.settings.vocabulary)
                    if plan.validation
                    else None
                )
                hooks = TrainHooks(on_progress=stats.progress, validate=validate)
                summary = run_training(options, encoder, plan.train, hooks, plan.weights)
            decision = self._gate(served, Path(summary["model"]), plan, params.device, stats)
            published = copy_atomic(summary["model"], self.settings.published_model) if decision.publish else None
        except Exception as err:  # record the failure for /info, then let MONAI Label report the task as ERROR
            line = stats.error(err)
            logger.error("training failed, the served model is unchanged: %s", line)
            raise
        if published is not None:
            logger.info("published %s -> %s (%s)", summary["model"], published, decision.reason)
        else:
            logger.warning("%s is %s", summary["model"], decision.reason)
        stats.data.pop("phase", None)
        stats.data.update(
            status="DONE",
            total_time=str(timedelta(seconds=int(time.time() - start))),
            final_loss=summary["final"],
            trained_steps=summary["steps"],
            stopped_by_time=summary["stopped_by_time"],
            **{k: summary[k] for k in ("best_val_dice", "best_step", "last_val_dice") if k in summary},
            structures=sorted({name for case in cases for name in case.targets}),
            published=str(published) if published is not None else None,
            publish_gate=decision.as_stats(),
        )
        write_json_atomic(stats.data, out / f"stats_{run_id}.json")
        stats.write()
        return stats.data

    def _gate(
        self, served: Path | None, candidate: Path, plan: RunPlan, device: str, stats: TrainStats
    ) -> GateDecision:
        """Score the candidate against the served model (validation share + phantom regression set + the real CT
        of ``rehearsal_data``, which the served model was trained on: does it still do what it did there); the
        run's stats say so while it scores."""
        if served is None:
            return GateDecision(True, "published: no model was served before")
        if not self.settings.publish_gate:
            return GateDecision(True, "published unscored: the publish gate is off (--conf publish_gate false)")
        stats.update(status="RUNNING", phase="publish gate: scoring the candidate and the served model")
        known = trained_structures(read_config(served))
        folder = phantom_set(
            Path(self._model_dir) / "phantoms" / f"regression_{REGRESSION_SEED}", REGRESSION_SEED, REGRESSION_CASES
        )
        regression = known_cases(folder, known, id_suffix="")
        if self.settings.rehearsal_data is not None:  # real anatomy the phantoms do not draw (lungs, vessels, bones)
            regression += known_cases(self.settings.rehearsal_data, known)
        return publish_gate(
            served,
            candidate,
            plan.validation,
            regression,
            known,
            self.settings.publish_tolerance,
            device,
            self.settings.vocabulary,
        )

    def _options(
        self, params: TrainParams, out: Path, init_from: Path | None, run_id: str, plan: RunPlan
    ) -> TrainOptions:
        if init_from is not None:
            encoder = self.settings.text_encoder or read_config(init_from).text_encoder
            logger.info(
                "fine-tuning %s for up to %.1f min (%d steps at most)", init_from, params.max_minutes, params.steps
            )
        else:
            encoder = self.settings.text_encoder or "default"
            logger.info("training a new %r model for up to %.1f min", self.settings.train_preset, params.max_minutes)
        return TrainOptions(
            data=out,
            out=out,
            steps=params.steps,
            preset=self.settings.train_preset,
            lr=params.prompt_learning_rate if plan.tune == "prompts" else params.learning_rate,
            text_encoder=encoder,
            vocabulary=str(self.settings.labels) if self.settings.labels else None,
            init_from=init_from,
            seed=int(run_id.replace("_", "")) % 100_000,
            device=params.device,
            progress=False,
            steps_per_epoch=params.steps_per_epoch,
            max_minutes=params.max_minutes,
            lr_schedule=RECIPE.lr_schedule,
            augment=params.augment,
            foreground_fraction=params.foreground_fraction,
            exclusion_fraction=RECIPE.exclusion_fraction,
            tune=plan.tune,
            structures=plan.structures,
        )

    def _engine_hook_not_used(self, context: Context) -> None:
        """MONAI Label's ignite hooks are not used: ``__call__`` runs textdiffseg's own training loop."""
        raise NotImplementedError("TextDiffSegTrainer runs textdiffseg.train_loop, not MONAI Label's engine")

    # BasicTrainTask declares these abstract; one implementation stands for all of them.
    network = optimizer = loss_function = _engine_hook_not_used
    train_pre_transforms = train_post_transforms = val_inferer = _engine_hook_not_used
