"""Smoke tests of the benchmark scripts (they print figures; nothing here asserts a timing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from textdiffseg.checkpoint import load_checkpoint, save_checkpoint
from textdiffseg.config import tiny_config
from textdiffseg.data.folders import load_folder
from textdiffseg.data.vocabulary import PromptVocabulary
from textdiffseg.losses import UNKNOWN
from textdiffseg.networks.model import TextDiffSeg
from textdiffseg.train_data import PreparedCase

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import accuracy  # noqa: E402
import independent_phantoms  # noqa: E402
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


def _accuracy_run(method: str, dice: float, budget_s: float = 60.0) -> dict:
    machine = {
        "torch_threads": 1,
        "loadavg_before": [1, 1, 1],
        "loadavg_after": [2, 2, 2],
        "seconds": 70.0,
        "budget_s": budget_s,
        "preset": "tiny",
        "train_cases": 8,
        "test_cases": 3,
        "phantom_spacing_mm": 4.0,
        "marks": 2,
    }
    curve = [{"train_s": 30.0, "steps": 5, "mean_dice": dice / 2}, {"train_s": 60.0, "steps": 10, "mean_dice": dice}]
    scores = {"liver": {"cases": 3, "dice": dice, "hd95_mm": 5.0}}
    return {"machine": machine, "results": {method: {"train": {"steps": 10}, "scores": scores, "curve": curve}}}


def test_accuracy_merge_puts_runs_of_other_methods_in_one_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = []
    for method, dice in (("textdiffseg", 0.5), ("segresnet", 0.75)):
        paths.append(tmp_path / f"{method}.json")
        paths[-1].write_text(json.dumps(_accuracy_run(method, dice)))
    out = tmp_path / "merged.json"
    assert accuracy.main(["--merge", *map(str, paths), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| liver | 0.500 / 5.0 | 0.750 / 5.0 |" in printed
    assert "| 60 | 0.500 (10) | 0.750 (10) |" in printed, "the learning curves of both runs"
    merged = json.loads(out.read_text())
    assert list(merged["results"]) == ["textdiffseg", "segresnet"] and len(merged["machine"]) == 2


def test_accuracy_merge_refuses_runs_that_are_not_comparable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match="budget_s"):
        accuracy.merge_runs([_accuracy_run("textdiffseg", 0.5), _accuracy_run("segresnet", 0.7, budget_s=120.0)])
    with pytest.raises(ValueError, match="segresnet is in more than one run"):
        accuracy.merge_runs([_accuracy_run("segresnet", 0.5), _accuracy_run("segresnet", 0.7)])
    missing = tmp_path / "missing.json"
    assert accuracy.main(["--merge", str(missing)]) == 2
    assert "accuracy.py --merge:" in capsys.readouterr().err
    merged = tmp_path / "merged.json"
    merged.write_text(json.dumps(accuracy.merge_runs([_accuracy_run("textdiffseg", 0.5)])))
    assert accuracy.main(["--merge", str(merged)]) == 2
    assert "is not the --json file of one run" in capsys.readouterr().err


def test_training_clock_scores_at_its_marks_and_stops_while_it_does(monkeypatch: pytest.MonkeyPatch) -> None:
    import baselines

    now = [0.0]
    monkeypatch.setattr(baselines.time, "perf_counter", lambda: now[0])
    seen: list[tuple[int, float]] = []

    def evaluate(steps: int) -> None:
        seen.append((steps, clock.elapsed()))
        now[0] += 50.0  # a slow evaluation: not training time

    clock = baselines.TrainingClock(budget_s=12.0, marks=4, on_mark=evaluate)
    steps = 0
    while clock.running(steps):
        now[0] += 1.0  # one training step of 1 s
        steps += 1
    assert [s for s, _ in seen] == [3, 6, 9], "marks at 3, 6 and 9 s of the 12 s budget; the last is the caller's"
    assert steps == 12 and clock.elapsed() == 12.0, "the evaluations' 150 s did not count against the budget"


def test_accuracy_set_takes_model_config_fields_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert accuracy.parse_args(["--set", "image_channels=[24]"]).set == {"image_channels": (24,)}
    for bad in ("no_such_field=1", "prompt_film", "prompt_film=yes"):
        with pytest.raises(SystemExit) as exit_info:
            accuracy.parse_args(["--set", bad])
        assert exit_info.value.code == 2 and "--set" in capsys.readouterr().err


def test_accuracy_refuses_a_save_models_folder_it_cannot_create_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        accuracy.parse_args(["--save-models", str(blocker / "models")])
    assert exit_info.value.code == 2 and "--save-models" in capsys.readouterr().err


def test_accuracy_learning_curve_table_has_a_row_per_mark() -> None:
    curve = [{"train_s": 60.0, "steps": 10, "mean_dice": 0.1}, {"train_s": 120.0, "steps": 21, "mean_dice": 0.25}]
    results = {m: {"train": {"steps": 21}, "scores": {}, "curve": curve} for m in ("textdiffseg", "segresnet")}
    table = accuracy.format_curve(results).splitlines()
    assert table[0] == "| training s | textdiffseg | segresnet |"
    assert table[2:] == ["| 60 | 0.100 (10) | 0.100 (10) |", "| 120 | 0.250 (21) | 0.250 (21) |"]


@pytest.mark.slow
def test_accuracy_quick_run_saves_the_trained_variant_it_scored(tmp_path: Path) -> None:
    out, models = tmp_path / "run.json", tmp_path / "models"
    argv = ["--quick", "--methods", "no-text-fusion", "--data", str(tmp_path / "data"), "--save-models", str(models)]
    assert accuracy.main([*argv, "--set", "prompt_film=true", "--set", "absent_weight=0", "--json", str(out)]) == 0
    label = "no-text-fusion absent_weight=0 prompt_film=true"  # the table says what was changed
    steps = json.loads(out.read_text())["results"][label]["train"]["steps"]
    model, extra = load_checkpoint(models / f"{label.replace(' ', '_')}.pt")
    assert extra == {"steps": steps} and steps > 0
    assert not model.config.use_text_fusion and model.config.use_label_encoder, "the ablation's own config is saved"
    assert model.config.prompt_film and model.config.absent_weight == 0 and hasattr(model, "prompt_film")
    torch.manual_seed(0)  # the run's seed: the same initial weights
    untrained = TextDiffSeg(model.config).state_dict()
    assert any(not torch.equal(w, untrained[k]) for k, w in model.state_dict().items()), "trained weights are saved"


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


# --- independent phantoms (benchmarks/independent_phantoms.py): small grids keep these fast -----------------------

INDEP_GRID = ["--max-inplane", "64", "--max-slices", "48", "--coverage", "full"]
INDEP_VOLUME_ML = {  # plausible adult ranges, with margin for the 6-10 mm test voxels
    "liver": (600, 2800),
    "spleen": (50, 350),
    "left kidney": (50, 260),
    "right kidney": (50, 260),
    "pancreas": (25, 150),
    "stomach": (50, 700),
    "gallbladder": (5, 100),
    "aorta": (30, 250),
    "inferior vena cava": (25, 250),
    "urinary bladder": (40, 600),
    "colon": (250, 2000),
}


@pytest.fixture(scope="module")
def indep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small independent phantoms (seed 5) written by the CLI into an existing, empty folder."""
    out = tmp_path_factory.mktemp("indep")
    assert independent_phantoms.main(["--out", str(out), "--cases", "2", "--seed", "5", *INDEP_GRID]) == 0
    return out


def _world_centroid(label: np.ndarray, affine: np.ndarray, value: int) -> np.ndarray:
    ijk = np.argwhere(label == value).mean(axis=0)
    return affine[:3, :3] @ ijk + affine[:3, 3]


def test_independent_phantoms_load_with_every_structure_at_a_plausible_volume(indep_dir: Path) -> None:
    cases = load_folder(indep_dir)
    assert [c.case_id for c in cases] == ["abd_000", "abd_001"]
    vocabulary = {e.name for e in PromptVocabulary.load().entries}
    for case in cases:
        assert set(case.targets) == {*INDEP_VOLUME_ML, "kidney"} and set(case.targets) <= vocabulary
        assert case.targets["kidney"] == case.targets["left kidney"] + case.targets["right kidney"]
        image, label_img = nib.load(case.image), nib.load(case.label)
        assert image.get_data_dtype() == np.int16 and label_img.get_data_dtype() == np.uint8
        assert image.shape == label_img.shape and np.allclose(image.affine, label_img.affine)
        assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
        label = np.asarray(label_img.dataobj)
        assert set(np.unique(label).tolist()) == set(range(12))  # background + 11 structures, one value a voxel
        voxel_ml = abs(np.linalg.det(label_img.affine[:3, :3])) / 1000.0
        for name, (lo, hi) in INDEP_VOLUME_ML.items():
            (value,) = case.targets[name]
            ml = float((label == value).sum()) * voxel_ml
            assert lo <= ml <= hi, (case.case_id, name, round(ml))


def test_independent_phantoms_put_organs_on_the_patients_correct_side(indep_dir: Path) -> None:
    # nibabel's world space is RAS+: ornt2axcodes labels the (negative, positive) ends of x as ('L', 'R'), so
    # world x grows toward the patient's Right; y toward Anterior, z toward Superior.
    for case in load_folder(indep_dir):
        img = nib.load(case.label)
        label = np.asarray(img.dataobj)
        at = {name: _world_centroid(label, img.affine, values[0]) for name, values in case.targets.items()}
        for right in ("liver", "right kidney", "gallbladder", "inferior vena cava"):
            for left in ("spleen", "left kidney", "stomach", "aorta"):
                assert at[right][0] > at[left][0], (case.case_id, right, left)
        assert at["right kidney"][2] < at["left kidney"][2], "the right kidney sits lower"
        assert at["spleen"][1] < at["stomach"][1], "the spleen is posterior to the stomach"
        assert at["urinary bladder"][2] < min(at[n][2] for n in INDEP_VOLUME_ML if n != "urinary bladder")
        assert at["liver"][2] > at["right kidney"][2] and at["gallbladder"][1] > at["right kidney"][1]


def test_independent_phantom_hu_per_tissue_and_contrast_phase() -> None:
    ip = independent_phantoms
    cases = {phase: ip.make_case(11, 0, 64, 48, "full", phase) for phase in ip.PHASES}
    liver_hu, aorta_hu = {}, {}
    for phase, case in cases.items():
        assert case.meta["phase"] == phase
        fat = case.hu[case.tissue == ip.FAT]
        bone = case.hu[case.tissue == ip.BONE]
        assert -130.0 < fat.mean() < -70.0, (phase, fat.mean())
        assert 150.0 < bone.mean() < 900.0 and np.percentile(bone, 95) > 400.0, (phase, bone.mean())
        assert np.median(case.hu[case.tissue == ip.OUTSIDE]) < -900.0
        liver_hu[phase] = float(case.hu[case.label == ip.STRUCTURES["liver"]].mean())
        aorta_hu[phase] = float(case.hu[case.label == ip.STRUCTURES["aorta"]].mean())
        # no organ floats outside the body: every labelled voxel lies inside the skin, below the fat and wall
        body = (case.tissue != ip.OUTSIDE) & (case.tissue != ip.TABLE)
        depth = ndimage.distance_transform_edt(body, sampling=np.abs(np.diag(case.affine)[:3]))
        assert depth[case.label > 0].min() >= 4.0, phase
    assert 40.0 < liver_hu["non-contrast"] < 75.0 < liver_hu["portal-venous"] < 140.0, liver_hu
    assert liver_hu["non-contrast"] < liver_hu["arterial"] < liver_hu["portal-venous"], liver_hu
    assert aorta_hu["arterial"] > 200.0 and aorta_hu["arterial"] > aorta_hu["portal-venous"] > aorta_hu["non-contrast"]
    with pytest.raises(ValueError, match="unknown phase"):
        ip.make_case(11, 0, 32, 16, "full", "delayed")


def test_independent_phantoms_are_reproducible_per_seed_and_differ_between_seeds(indep_dir: Path) -> None:
    again = independent_phantoms.make_case(5, 1, 64, 48, "full")
    image = nib.load(indep_dir / "imagesTr" / "abd_001.nii.gz")
    assert np.array_equal(np.asarray(image.dataobj), again.hu)
    assert np.array_equal(np.asarray(nib.load(indep_dir / "labelsTr" / "abd_001.nii.gz").dataobj), again.label)
    assert np.allclose(image.affine, again.affine)
    other = independent_phantoms.make_case(6, 1, 64, 48, "full")
    assert not np.allclose(other.affine, again.affine)  # another patient size, so another field of view
    liver = independent_phantoms.STRUCTURES["liver"]
    volumes = [(c.label == liver).sum() * abs(np.linalg.det(c.affine[:3, :3])) for c in (again, other)]
    assert abs(volumes[0] - volumes[1]) > 0.01 * volumes[0]


def test_independent_phantoms_refuse_a_non_empty_out_with_one_line(tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    script = Path(independent_phantoms.__file__)
    argv = ["--out", str(out), "--cases", "1", "--max-inplane", "32", "--max-slices", "16"]
    run = subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert run.stderr.strip().count("\n") == 0 and "is not an empty folder" in run.stderr, run.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["taken"], "no temporary folder left behind"
    with pytest.raises(SystemExit, match="refusing to overwrite"):  # a file where the folder should go
        independent_phantoms.main(["--out", str(out / "keep.txt"), "--cases", "1"])


def test_independent_phantoms_leave_nothing_behind_when_a_case_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = independent_phantoms.make_case
    made: list[int] = []

    def second_fails(*args: object, **kwargs: object) -> independent_phantoms.Case:
        if made:
            raise RuntimeError("generation failed")
        made.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(independent_phantoms, "make_case", second_fails)
    with pytest.raises(RuntimeError, match="generation failed"):
        independent_phantoms.write_dataset(tmp_path / "out", 2, 1, 32, 16, "full")
    assert made and list(tmp_path.iterdir()) == []
