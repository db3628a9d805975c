"""The training and evaluation CLIs: run folder contents, resume, JSON output and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from textdiffseg import evaluate, train
from textdiffseg.checkpoint import read_checkpoint


def _train(args: list[str]) -> int:
    return train.main(args)


def test_train_then_resume_then_evaluate(tmp_path: Path, train_phantom_dir: Path, tiny_bert_dir: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    common = ["--data", str(train_phantom_dir), "--out", str(run), "--preset", "tiny", "--no-progress",
              "--text-encoder", str(tiny_bert_dir), "--save-every", "2"]
    assert _train([*common, "--steps", "3"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 3 and set(summary["final"]) == {"loss", "seg", "recon", "denoise"}
    assert (run / "model.pt").is_file() and (run / "last.pt").is_file()
    assert read_checkpoint(run / "last.pt")["extra"]["step"] == 3

    assert _train([*common, "--steps", "5", "--resume"]) == 0
    history = [json.loads(line)["step"] for line in (run / "history.jsonl").read_text().splitlines()]
    assert history == [1, 2, 3, 4, 5], "resume continues where the run stopped"
    capsys.readouterr()

    out_json = tmp_path / "eval.json"
    assert evaluate.main(["--data", str(train_phantom_dir), "--ckpt", str(run / "model.pt"), "--json",
                          str(out_json), "--steps", "2"]) == 0
    table = capsys.readouterr().out
    assert "| prompt | cases | Dice | HD95 (mm) |" in table and "| liver |" in table
    scores = json.loads(out_json.read_text())
    assert 0.0 <= scores["liver"]["dice"] <= 1.0 and scores["liver"]["cases"] == 1
    assert scores["liver tumor"]["absent_cases"] == 1


def test_ablation_flags_reach_the_checkpoint(tmp_path: Path, train_phantom_dir: Path, tiny_bert_dir: Path) -> None:
    run = tmp_path / "abl"
    assert _train(["--data", str(train_phantom_dir), "--out", str(run), "--preset", "tiny", "--steps", "1",
                   "--no-progress", "--text-encoder", str(tiny_bert_dir), "--ablation", "no-text-fusion",
                   "--ablation", "no-label-encoder"]) == 0
    config = json.loads(read_checkpoint(run / "model.pt")["config"])
    assert config["use_text_fusion"] is False and config["use_label_encoder"] is False
    assert config["use_image_encoder"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "/nonexistent/folder"], "is not a folder"),
        (["--structure", "brain"], "not annotated"),
        (["--text-encoder", "/nonexistent/bert"], "cannot load text encoder"),
    ],
)
def test_bad_training_input_gives_one_line_errors(tmp_path: Path, train_phantom_dir: Path, tiny_bert_dir: Path,
                                                  capsys: pytest.CaptureFixture[str], args: list[str],
                                                  message: str) -> None:
    base = {"--data": str(train_phantom_dir), "--text-encoder": str(tiny_bert_dir)}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    argv = [x for kv in base.items() for x in kv] + ["--out", str(tmp_path / "r"), "--steps", "1", "--no-progress",
                                                   "--preset", "tiny"]
    if "--structure" in args:
        argv += ["--structure", "brain"]
    assert _train(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]


def test_evaluate_refuses_a_missing_checkpoint(tmp_path: Path, train_phantom_dir: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert evaluate.main(["--data", str(train_phantom_dir), "--ckpt", str(tmp_path / "none.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    "options",
    [
        train.TrainOptions(data=Path("/d"), out=Path("/o")),
        train.TrainOptions(data=Path("/d/cases.json"), out=Path("/o"), steps=7, preset="tiny", lr=3e-4,
                           text_encoder="/models/bert", vocabulary="/v.json", prompts_per_volume=2, global_batch=4,
                           negative_fraction=0.1, structures=("liver", "left kidney"),
                           ablations=("no-text-fusion",), init_from=Path("/m.pt"), resume=True, save_every=3,
                           seed=9, device="cuda", progress=False),
    ],
)
def test_launch_flags_reproduce_the_options(options: train.TrainOptions) -> None:
    from textdiffseg.launch import options_to_argv, torchrun_command

    assert train.parse_args(options_to_argv(options)) == options
    command = torchrun_command(options, nproc=4)
    assert command[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]


def test_case_list_round_trip(tmp_path: Path, train_phantom_dir: Path) -> None:
    from textdiffseg.data.folders import DatasetFolderError, load_case_list, load_folder, save_case_list

    cases = load_folder(train_phantom_dir)
    assert load_case_list(save_case_list(cases, tmp_path / "cases.json")) == cases
    (tmp_path / "bad.json").write_text('[{"case_id": "x"}]')
    with pytest.raises(DatasetFolderError, match="cannot read case list"):
        load_case_list(tmp_path / "bad.json")


def test_structures_file_adds_to_the_structure_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    listing = tmp_path / "structures.txt"
    listing.write_text("# organs a site prompts\nliver\n\nleft kidney  # sided\n")
    opts = train.parse_args(["--data", "/d", "--out", "/o", "--structure", "spleen", "--structures-file", str(listing)])
    assert opts.structures == ("spleen", "liver", "left kidney")

    listing.write_text("liver\nliver\n")
    with pytest.raises(SystemExit):
        train.parse_args(["--data", "/d", "--out", "/o", "--structures-file", str(listing)])
    assert "more than once" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.parse_args(["--data", "/d", "--out", "/o", "--structures-file", str(tmp_path / "none.txt")])
    assert "--structures-file" in capsys.readouterr().err


def test_the_shipped_structure_list_reads_as_the_checkpoint_records_it() -> None:
    from textdiffseg.checkpoint import read_config
    from textdiffseg.prompt_match import trained_structures

    root = Path(__file__).resolve().parents[1]
    names = train.read_structure_list(root / "scripts" / "gpu_recipe" / "structures.txt")
    config = read_config(root / "apps" / "textdiffseg_app" / "model" / "pretrained_textdiffseg.pt")
    assert sorted(names) == sorted(trained_structures(config))
