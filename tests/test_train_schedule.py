"""The run's pacing: the learning-rate schedule, a wall-time budget, and patches drawn by background workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from textdiffseg.config import tiny_config
from textdiffseg.data.folders import load_folder
from textdiffseg.data.vocabulary import PromptVocabulary
from textdiffseg.train_data import PromptedPatchSampler, prepare_cases
from textdiffseg.train_loop import TrainOptions, run_training
from textdiffseg.train_schedule import LearningRateSchedule, patch_stream


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)


def test_cosine_warms_up_peaks_and_ends_low() -> None:
    schedule = LearningRateSchedule(_optimizer(), 1e-3, "cosine", steps=1000)
    rates = [schedule.update(step, 0.0) for step in range(1000)]
    assert rates[0] < 1e-4  # warm-up starts low
    assert max(rates) == pytest.approx(1e-3, rel=1e-3)
    assert rates.index(max(rates)) in range(25, 35)  # peak after the 3 % warm-up
    assert rates[-1] == pytest.approx(5e-5, rel=0.05)  # ends at 5 % of the peak
    assert all(a >= b for a, b in zip(rates[40:], rates[41:]))  # monotone decay after the peak
    assert schedule.optimizer.param_groups[0]["lr"] == rates[-1]


def test_a_group_with_an_lr_scale_follows_the_schedule_at_its_share() -> None:
    base, scaled = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [base]}, {"params": [scaled], "lr_scale": 0.1}], lr=1.0)
    schedule = LearningRateSchedule(optimizer, 1e-2, "cosine", steps=100)
    for step in (0, 10, 60, 99):
        rate = schedule.update(step, 0.0)
        assert optimizer.param_groups[0]["lr"] == rate
        assert optimizer.param_groups[1]["lr"] == pytest.approx(0.1 * rate)


def test_time_budget_drives_the_schedule_when_it_is_further_along() -> None:
    schedule = LearningRateSchedule(_optimizer(), 1.0, "cosine", steps=10_000, budget_s=100.0)
    assert schedule.progress(10, 50.0) == 0.5
    assert schedule.progress(9_000, 50.0) == 0.9
    assert schedule.rate(1.0) == pytest.approx(0.05)
    constant = LearningRateSchedule(_optimizer(), 0.3, "constant", steps=10)
    assert constant.update(9, 0.0) == 0.3
    with pytest.raises(ValueError, match="lr_schedule"):
        LearningRateSchedule(_optimizer(), 1.0, "step", steps=10)


def test_background_workers_draw_valid_distinct_patches(train_phantom_dir: Path) -> None:
    config = tiny_config()
    cases = prepare_cases(load_folder(train_phantom_dir), config)
    sampler = PromptedPatchSampler(cases, PromptVocabulary.load(None), config.roi_size, 2, seed=3)
    stream = patch_stream(sampler, workers=2)
    patches = [next(stream) for _ in range(6)]
    for image, prompts, targets in patches:
        assert image.shape == (1, config.in_channels, *config.roi_size)
        assert len(prompts) == 2 and targets.shape == (2, 1, *config.roi_size)
        assert set(torch.unique(targets).tolist()) <= {0.0, 1.0}
    # two workers with their own seeds: the first patch of each differs
    assert not torch.equal(patches[0][0], patches[1][0])
    with pytest.raises(ValueError, match="workers"):
        patch_stream(sampler, workers=-1)


def test_a_run_stops_at_its_time_budget_and_says_so(train_phantom_dir: Path, default_encoder, tmp_path: Path) -> None:
    opts = TrainOptions(
        data=train_phantom_dir,
        out=tmp_path / "run",
        steps=100_000,
        preset="tiny",
        max_minutes=0.1,
        lr_schedule="cosine",
        progress=False,
    )
    summary = run_training(opts, encoder=default_encoder)
    assert summary["stopped_by_time"] is True
    assert 0 < summary["steps"] < 100_000
    assert summary["seconds"] < 60
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert len(history) == summary["steps"]
    # every step ran at the schedule's rate (the decay itself along a time budget: the unit test above; how many
    # steps fit in 6 s depends on the machine's load)
    assert all(0 < h["lr"] <= opts.lr for h in history)
    assert set(summary["final"]) == {"loss", "seg", "recon", "denoise"}
    assert (tmp_path / "run" / "model.pt").is_file()
