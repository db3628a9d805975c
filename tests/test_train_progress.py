"""Epoch reports, validation spacing and best-checkpoint keeping of ``run_training`` (``train_progress``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from textdiffseg.checkpoint import read_checkpoint
from textdiffseg.train_loop import TrainOptions, run_training
from textdiffseg.train_progress import ProgressReport, TrainHooks, ValidationSchedule, eta_seconds


def test_eta_is_the_pace_or_the_time_left_whichever_is_less() -> None:
    assert eta_seconds(10, 30, 20.0, None) == pytest.approx(60.0)
    assert eta_seconds(10, 30, 20.0, 50.0) == pytest.approx(30.0)
    assert eta_seconds(10, 30, 60.0, 50.0) == 0.0


def test_validation_takes_about_a_tenth_of_the_run() -> None:
    schedule = ValidationSchedule(share=0.1)
    assert schedule.due(5.0)
    schedule.done(5.0, 7.0)  # took 2 s: next one after 18 s more of training
    assert not schedule.due(24.9) and schedule.due(25.0)


def test_epoch_reports_and_the_best_validated_weights_become_model_pt(
    train_phantom_dir: Path, tiny_encoder, tmp_path: Path
) -> None:
    scores = iter([0.2, 0.6, 0.4])
    reports: list[ProgressReport] = []
    weights: list[dict] = []

    def validate(model: torch.nn.Module) -> float:
        weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return next(scores)

    opts = TrainOptions(data=train_phantom_dir, out=tmp_path, steps=6, preset="tiny", progress=False, steps_per_epoch=2)
    summary = run_training(opts, encoder=tiny_encoder, hooks=TrainHooks(on_progress=reports.append, validate=validate))
    assert [(r.step, r.epoch, r.total_epochs) for r in reports] == [(2, 1, 3), (4, 2, 3), (6, 3, 3)]
    assert [r.val_dice for r in reports] == [0.2, 0.6, 0.4] and [r.best_val_dice for r in reports] == [0.2, 0.6, 0.6]
    assert reports[-1].eta_s == 0.0 and all(r.loss > 0 for r in reports)
    assert (summary["best_step"], summary["best_val_dice"], summary["last_val_dice"]) == (4, 0.6, 0.4)
    served = read_checkpoint(tmp_path / "model.pt")["state_dict"]
    last = read_checkpoint(tmp_path / "last.pt")["state_dict"]
    assert all(torch.equal(served[k], weights[1][k]) for k in served)  # the weights validated at step 4
    assert any(not torch.equal(last[k], weights[1][k]) for k in last)


def test_a_run_stopped_by_its_time_budget_still_reports_and_validates_its_last_weights(
    train_phantom_dir: Path, tiny_encoder, tmp_path: Path
) -> None:
    reports: list[ProgressReport] = []
    opts = TrainOptions(
        data=train_phantom_dir,
        out=tmp_path,
        steps=1000,
        preset="tiny",
        progress=False,
        steps_per_epoch=500,
        max_minutes=1e-9,
    )
    summary = run_training(
        opts, encoder=tiny_encoder, hooks=TrainHooks(on_progress=reports.append, validate=lambda m: 0.5)
    )
    assert summary["stopped_by_time"] and summary["steps"] < 500
    assert len(reports) == 1 and reports[0].val_dice == 0.5 and reports[0].eta_s == 0.0
