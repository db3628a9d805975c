"""Smoke tests of the benchmark scripts (they print figures; nothing here asserts a timing)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from textdiffseg.checkpoint import save_checkpoint
from textdiffseg.config import tiny_config
from textdiffseg.losses import UNKNOWN
from textdiffseg.networks.model import TextDiffSeg
from textdiffseg.train_data import PreparedCase

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import accuracy  # noqa: E402
import latency  # noqa: E402
import learned_prompt  # noqa: E402


@pytest.mark.slow
def test_latency_quick_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "latency.json"
    assert latency.main(["--quick", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| TextDiffSeg 5 prompts / 1 prompt |" in printed and "extrapolated" in printed
    result = json.loads(out.read_text())
    rows = result["results"][0]["rows"]
    assert set(rows) == {"textdiffseg_1", "textdiffseg_5", "segresnet", "pixel_diffusion"}
    assert all(r["wall_s"] > 0 and r["peak_rss_gib"] > 0 for r in rows.values())
    assert result["machine"]["torch_threads"] >= 1 and len(result["machine"]["loadavg_before"]) == 3


def test_latency_times_the_previous_checkpoint_beside_the_new_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "latency.json"
    shipped = str(latency.DEMO_CKPT)
    argv = ["--quick", "--textdiffseg-only", "--previous-ckpt", shipped, "--json", str(out)]
    assert latency.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| TextDiffSeg / previous, 1 prompt(s) | 64x64x48 |" in printed
    result = json.loads(out.read_text())["results"][0]
    assert set(result["rows"]) == {"textdiffseg_1", "textdiffseg_5", "previous_1", "previous_5"}
    ratio = result["ratios"]["textdiffseg_1_over_previous_1"]
    rows = result["rows"]
    assert ratio == round(rows["textdiffseg_1"]["wall_s"] / rows["previous_1"]["wall_s"], 3)


def test_accuracy_table_has_a_column_per_method_and_a_mean_row() -> None:
    scores = {
        "liver": {"cases": 2, "dice": 0.5, "hd95_mm": 10.0},
        "spleen": {"cases": 2, "dice": 0.25, "hd95_mm": None},
    }
    results = {m: {"train": {"steps": 3}, "scores": scores} for m in ("textdiffseg", "segresnet")}
    table = accuracy.format_table(results).splitlines()
    assert table[0] == "| structure | textdiffseg | segresnet |"
    assert "| liver | 0.500 / 10.0 | 0.500 / 10.0 |" in table
    assert "| **mean** | 0.375 / 10.0 | 0.375 / 10.0 |" in table
    assert table[-1] == "| training steps | 3 | 3 |"


def test_clicks_benchmark_scores_the_served_click_path(coarse_phantom_dir: Path, tmp_path: Path) -> None:
    import clicks

    ckpt = tmp_path / "untrained.pt"  # an untrained model misses the lesion; the click edits alone take it in
    save_checkpoint(ckpt, TextDiffSeg(tiny_config()))
    result = clicks.run(ckpt, coarse_phantom_dir, cases=1, structures=["liver tumor"], rounds=3)
    row = result["structures"]["liver tumor"]["dice"]
    assert set(row) == {0, 1, 3} and result["click_edits"] and not result["click_branch"]
    assert row[3] > row[0] + 0.2, row  # the edits take a missed lesion in from its clicks
    with pytest.raises(SystemExit, match="no click branch"):
        clicks.run(ckpt, coarse_phantom_dir, cases=1, structures=["liver tumor"], rounds=1, edits=False)


def test_organ_negatives_say_not_it_only_on_labelled_organs() -> None:
    label = torch.zeros((8, 8, 8), dtype=torch.int16)
    label[:4] = 1  # liver
    label[6:, 6:, 6:] = 2  # a lesion, not an organ: no supervision there
    organ_case = PreparedCase("a", torch.rand(2, 8, 8, 8), label, {"liver": (1,), "liver tumor": (2,)}, frozenset())
    bone_case = PreparedCase("b", torch.rand(2, 8, 8, 8), label, {"sacrum": (1,)}, frozenset())
    negatives = learned_prompt.OrganNegatives([organ_case, bone_case], (8, 8, 8), "ribs", seed=0)
    assert [c.case_id for c, _ in negatives.cases] == ["a"], "a case without a labelled organ says nothing"
    image, prompts, target = negatives.sample()
    assert image.shape == (1, 2, 8, 8, 8) and prompts == ["ribs"] and target.shape == (1, 1, 8, 8, 8)
    assert (target[0, 0][:4] == 0).all() and (target[0, 0][4:] == UNKNOWN).all()
    with pytest.raises(ValueError, match="no case labels any of"):
        learned_prompt.OrganNegatives([bone_case], (8, 8, 8), "ribs", seed=0)
