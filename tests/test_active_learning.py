"""benchmarks/active_learning.py (issue 14 item 5): its data, Dice, round bookkeeping and report, on tiny inputs.

The benchmark itself (servers, /train, /infer) runs for an hour; ``--quick`` still takes 2.5-3.5 min (one server per
strategy), too long for the suite. Here each piece it is built from runs on real files: phantoms from the generator,
the real CT folder, label maps scored against their truth, and reports written from a record of rounds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from textdiffseg.data import realct
from textdiffseg.data.label_maps import PHANTOM_TARGETS
from textdiffseg.data.vocabulary import PromptVocabulary
from textdiffseg.label_info import targets_from_label_info

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import active_learning as al  # noqa: E402

REALCT = ROOT / "datasets" / "realct"


def _args(**over: object) -> argparse.Namespace:
    values = {"pool_phantoms": 2, "test_phantoms": 1, "spacing": 8.0, "real_pool": [], "real_test": [], "data": REALCT}
    return argparse.Namespace(**{**values, **over})


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[al.Case], list[al.Case]]:
    """A pool of two 8-mm wide phantoms (seed 400) and a test set of one (seed 500)."""
    return al.prepare_data(_args(), tmp_path_factory.mktemp("al_data"))


def _voxels(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj).round().astype(np.int32)


def test_pool_and_test_set_are_distinct_unlabelled_phantoms(data: tuple[list[al.Case], list[al.Case]]) -> None:
    pool, test = data
    assert [c.case_id for c in pool] == ["phantom400_000", "phantom400_001"]  # sorted ids: what `first` picks first
    assert [c.case_id for c in test] == ["test500_000"]
    assert all(c.targets == dict(PHANTOM_TARGETS) and c.label_info == () and not c.real for c in pool + test)
    assert not np.array_equal(_voxels(pool[0].label), _voxels(test[0].label))  # another series, another phantom
    with pytest.raises(ValueError, match="overlaps the pool"):
        al.check_disjoint(pool, [pool[1]])


def test_studies_folder_holds_the_pool_images_and_no_label(
    data: tuple[list[al.Case], list[al.Case]], tmp_path: Path
) -> None:
    pool, _ = data
    studies = al.write_studies(tmp_path / "studies", pool)
    assert sorted(p.name for p in studies.iterdir()) == ["phantom400_000.nii.gz", "phantom400_001.nii.gz"]
    assert (studies / "phantom400_001.nii.gz").read_bytes() == pool[1].image.read_bytes()


def test_real_case_label_info_names_what_its_truth_holds() -> None:
    if not (REALCT / "dataset.json").is_file():
        realct.build(REALCT, ROOT / "datasets" / "downloads")
    (case,) = al.real_cases(REALCT, ["slicer_chest"])
    assert case.real and case.case_id == "slicer_chest"
    targets = targets_from_label_info(case.label_info_json(), PromptVocabulary.load(None))
    for name in ("ribs", "left lung", "right lung", "thoracic spine"):  # what the app will train on, as named
        assert targets[name] == case.targets[name]
        assert np.isin(_voxels(case.label), targets[name]).any()
    with pytest.raises(SystemExit, match="no case nowhere"):
        al.real_cases(REALCT, ["nowhere"])


def test_case_dice_scores_a_label_map_by_the_names_of_its_values(data: tuple[list[al.Case], list[al.Case]]) -> None:
    case = data[1][0]
    truth = _voxels(case.label)
    liver = np.isin(truth, PHANTOM_TARGETS["liver"])
    predicted = np.zeros(truth.shape, np.uint8)
    predicted[liver] = 7
    predicted[:, :, ::2] = 0  # half of the liver's slices lost
    kept = int((predicted == 7).sum())
    scores = al.case_dice(predicted, {"liver": 7, "spleen": 2}, case, ["liver", "spleen", "urinary bladder"])
    assert set(scores) == {"liver", "spleen"}  # a phantom has no bladder: not scored
    assert scores["liver"] == pytest.approx(2 * kept / (kept + int(liver.sum())), abs=1e-4) and scores["liver"] < 0.9
    assert scores["spleen"] == 0.0  # nothing predicted there
    assert al.present_structures(case, ["urinary bladder", "spleen", "liver"]) == ["spleen", "liver"]


def test_dice_means_weigh_each_test_image_once() -> None:
    scores = {"test500_000": {"liver": 1.0, "spleen": 0.5}, "ts_abdomen": {"liver": 0.25}}
    assert al.dice_means(scores, {"ts_abdomen"}) == {"all": 0.5, "phantoms": 0.75, "real": 0.25}
    assert al.dice_means({"a": {"liver": 0.4}}, set())["real"] is None


def test_verdict_counts_rounds_to_random_final_dice() -> None:
    assert al.rounds_to_reach([0.5, None, 0.69, 0.7], 0.7) == 3
    assert al.rounds_to_reach([0.5, 0.6], 0.7) is None
    faster = al.verdict({"diffusion_uncertainty": [0.5, 0.7, 0.7, 0.72], "random": [0.5, 0.55, 0.6, 0.7]})
    assert faster["rounds_to_random_final"] == {"diffusion_uncertainty": 1, "random": 3} and faster["fewer_rounds"]
    later = al.verdict({"diffusion_uncertainty": [0.5, 0.6, 0.7], "random": [0.5, 0.7, 0.7]})
    assert not later["fewer_rounds"] and "after 2 round(s), random after 1: not fewer" in later["text"]
    worse = al.verdict({"diffusion_uncertainty": [0.55, 0.53], "random": [0.55, 0.54], "first": [0.55, 0.56]})
    assert not worse["fewer_rounds"] and "is not above round 0's (0.550, the shipped model)" in worse["text"]
    never = al.verdict({"diffusion_uncertainty": [0.5, 0.6], "random": [0.5, 0.65]})
    assert not never["fewer_rounds"] and never["text"].startswith("diffusion_uncertainty never reached")


def _round(number: int, served: float, own: float, picked: str, published: bool) -> dict:
    means = {"all": served, "phantoms": served + 0.05, "real": served - 0.15}
    own_means = {"all": own, "phantoms": own, "real": own}
    reason = "published" if published else "not published: Dice dropped | kidney 0.9 -> 0.8; the served model is kept"
    train = {"wall_s": 150.0, "trained_steps": 300, "published": published, "gate_reason": reason}
    return {"round": number, "picked": picked, "test_dice": means, "candidate_dice": own_means, "train": train}


def _record() -> dict:
    start = {"round": 0, "test_dice": {"all": 0.6, "phantoms": 0.65, "real": 0.45}}
    start["candidate_dice"] = start["test_dice"]
    rounds = {
        "diffusion_uncertainty": [_round(1, 0.7, 0.7, "rider_lung", True), _round(2, 0.7, 0.65, "p_000", False)],
        "random": [_round(1, 0.6, 0.62, "p_001", False), _round(2, 0.7, 0.7, "p_000", True)],
        "first": [_round(1, 0.6, 0.5, "p_000", False), _round(2, 0.6, 0.55, "p_001", False)],
    }
    strategies = {name: {"rounds": [start, *r]} for name, r in rounds.items()}
    return {
        "settings": {"rounds": 2, "minutes": 2.0, "structures": ["liver", "spleen"]},
        "pool": [{"id": "p_000"}, {"id": "p_001"}, {"id": "rider_lung"}],
        "test": [{"id": "t_000"}, {"id": "ts_abdomen"}],
        "machine_before": {"cpus": 2},
        "wall_s": 3600.0,
        "strategies": strategies,
        "verdict": al.verdicts(strategies),
    }


def test_report_tables_verdicts_and_plot(tmp_path: Path) -> None:
    record = _record()
    reach = record["verdict"]["served"]["rounds_to_random_final"]
    assert reach == {"diffusion_uncertainty": 1, "random": 2, "first": None}
    assert record["verdict"]["served"]["fewer_rounds"] is True
    assert record["verdict"]["candidate"]["fewer_rounds"] is True  # own models: 0.70 at round 1 against random's 2
    text = al.markdown(record)
    assert "| round | diffusion_uncertainty | random | first |" in text
    assert "| 1 | **0.700** (ph 0.750 / real 0.550) + rider_lung, published | **0.600** (ph 0.650 / real 0.450)" in text
    assert (
        "| 2 | **0.650** (ph 0.650 / real 0.650) + p_000, kept | **0.700** (ph 0.700 / real 0.700) + p_000, published"
        in text
    )
    assert "| first | 2 | p_001 | - | 150 | 300 | no | not published: Dice dropped / kidney" in text
    assert "60.0 min in all" in text and "after 1 round(s), random after 2: fewer" in text
    paths = [tmp_path / "a" / "al.png", tmp_path / "b.png"]
    al.plot(record, paths)
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_quick_flags_shrink_the_run_and_explicit_flags_win() -> None:
    quick = al.parse_args(["--quick", "--rounds", "2"])
    assert (quick.rounds, quick.minutes, quick.pool_phantoms, quick.real_pool, quick.docs_png) == (2, 0.1, 2, [], None)
    full = al.parse_args([])
    assert (full.rounds, full.minutes, full.real_pool, full.real_test) == (3, 2.0, list(al.REAL_POOL), ["ts_abdomen"])
    assert full.docs_png == ROOT / "docs" / "active_learning.png"
    with pytest.raises(SystemExit):
        al.parse_args(["--quick", "--rounds", "3"])  # two pool images cannot fill three rounds
