"""Learned prompts: a new structure taught to a frozen model, and nothing it knew changed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.transforms import EnsureChannelFirst, LoadImage

from textdiffseg import train
from textdiffseg.checkpoint import load_checkpoint, save_checkpoint
from textdiffseg.config import tiny_config
from textdiffseg.inference import Segmenter
from textdiffseg.model_scores import dice
from textdiffseg.networks.learned_prompts import LearnedPrompts, initial_tokens
from textdiffseg.networks.model import TextDiffSeg
from textdiffseg.prompt_match import trained_structures
from textdiffseg.prompt_tuning import ADAPTER_LR_RATIO, new_structures, prompt_parameters, with_learned_prompts
from textdiffseg.train_loop import TrainOptions, run_training

NEW = "right kidney"  # annotated in the phantoms, not among the tiny model's TINY_TRAIN_STRUCTURES


def test_learned_tokens_replace_only_the_prompts_of_their_structure() -> None:
    prompts = LearnedPrompts(("ribs",), length=5, hidden_size=4, channels=2)
    with torch.no_grad():
        prompts.tokens.fill_(7.0)
    tokens, mask = torch.randn(3, 3, 4), torch.tensor([[True, True, False], [True, True, True], [True, False, False]])
    out, out_mask = prompts.substitute(tokens, mask, ["liver", "ribs", None])
    assert out.shape == (3, 5, 4) and out_mask.shape == (3, 5)
    assert torch.equal(out[1], torch.full((5, 4), 7.0)) and bool(out_mask[1].all())
    for i in (0, 2):  # the others: their own tokens, padding masked out
        assert torch.equal(out[i, :3], tokens[i]) and torch.equal(out_mask[i, :3], mask[i])
        assert not out_mask[i, 3:].any()
    same, same_mask = prompts.substitute(tokens, mask, ["liver", None, "spleen"])
    assert same is tokens and same_mask is mask
    fused = torch.randn(3, 2, 4, 4, 4)
    assert torch.equal(prompts.adapt(fused, ["liver", "ribs", None]), fused), "a new adapter adds nothing"
    with torch.no_grad():
        prompts.adapters[0].body[2].bias.fill_(1.0)
    adapted = prompts.adapt(fused, ["liver", "ribs", None])
    assert torch.equal(adapted[[0, 2]], fused[[0, 2]]) and not torch.equal(adapted[1], fused[1])
    with pytest.raises(ValueError, match="unique"):
        LearnedPrompts(("ribs", "ribs"), 2, 4, 2)


def test_initial_tokens_are_the_name_tokens_padded_with_the_last() -> None:
    name = torch.arange(6.0).view(3, 2)
    assert torch.equal(initial_tokens(name, 5), torch.cat([name, name[-1:].repeat(2, 1)]))
    assert torch.equal(initial_tokens(name, 2), name[:2])


def test_growing_prompts_keeps_every_weight_and_round_trips(tiny_encoder, tmp_path: Path) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    config = tiny_config(text_encoder=tiny_encoder.name, text_hidden_size=tiny_encoder.hidden_size)
    model = TextDiffSeg(config)
    grown = with_learned_prompts(model, ["ribs"], tiny_encoder)
    assert grown.config.learned_prompts == ("ribs",) and model.config.learned_prompts == ()
    before = model.state_dict()
    assert all(torch.equal(before[k], v) for k, v in grown.state_dict().items() if k in before)
    assert {k.split(".")[0] for k in set(grown.state_dict()) - set(before)} == {"learned_prompts"}
    name_tokens = tiny_encoder.encode(["ribs"])[0][0]
    assert torch.equal(grown.learned_prompts.tokens[0], initial_tokens(name_tokens, config.learned_prompt_length))
    again = with_learned_prompts(grown, ["ribs", "sternum"], tiny_encoder)  # ribs kept, sternum added
    assert again.config.learned_prompts == ("ribs", "sternum")
    assert torch.equal(again.learned_prompts.tokens[0], grown.learned_prompts.tokens[0])
    path = save_checkpoint(tmp_path / "grown.pt", again)
    loaded, _ = load_checkpoint(path, tiny_encoder)
    assert loaded.config.learned_prompts == ("ribs", "sternum")
    assert torch.equal(loaded.learned_prompts.tokens, again.learned_prompts.tokens)
    groups = prompt_parameters(loaded, lr=1e-2)
    assert [g["lr"] for g in groups] == [1e-2, 1e-2 * ADAPTER_LR_RATIO]
    trained = {id(p) for g in groups for p in g["params"]}
    assert trained == {id(p) for p in loaded.learned_prompts.parameters()}
    assert all(not p.requires_grad for n, p in loaded.named_parameters() if not n.startswith("learned_prompts"))


def test_tune_prompts_needs_a_model_to_start_from(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        train.parse_args(["--data", str(tmp_path), "--out", str(tmp_path / "run"), "--tune", "prompts"])
    assert "--init-from" in capsys.readouterr().err
    opts = train.parse_args(["--data", str(tmp_path), "--out", str(tmp_path / "r"), "--tune", "prompts",
                             "--init-from", str(tmp_path / "m.pt")])  # fmt: skip
    assert opts.tune == "prompts"


def test_tune_prompts_refuses_data_with_nothing_new(trained_tiny, train_phantom_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    opts = TrainOptions(
        data=train_phantom_dir, out=tmp_path / "run", steps=1, preset="tiny", structures=("liver",), progress=False,
        init_from=trained_tiny.run_dir / "model.pt", tune="prompts",
    )  # fmt: skip
    with pytest.raises(ValueError, match="already knows every structure"):
        run_training(opts, encoder=trained_tiny.encoder)


def _answers(model: TextDiffSeg, encoder, image, prompts: list[str]) -> np.ndarray:  # noqa: ANN001
    return Segmenter(model, encoder, unknown_below=None).predict(image, prompts).probability


def test_a_prompts_only_run_learns_the_new_structure_and_changes_nothing_else(
    trained_tiny,  # noqa: ANN001
    train_phantom_dir: Path,
    tmp_path: Path,
) -> None:
    start = trained_tiny.run_dir / "model.pt"
    assert new_structures(trained_tiny.model, [NEW, "liver"]) == [NEW]
    opts = TrainOptions(
        data=train_phantom_dir, out=tmp_path / "run", steps=100, preset="tiny", lr=2e-2, prompts_per_volume=2,
        structures=(NEW,), progress=False, seed=0, init_from=start, tune="prompts", foreground_fraction=0.5,
        lr_schedule="cosine",  # as /train: at a constant 2e-2 a run in the full suite learned, then lost it by step 100
    )  # fmt: skip
    summary = run_training(opts, encoder=trained_tiny.encoder)
    tuned, _ = load_checkpoint(summary["model"], trained_tiny.encoder)
    served, _ = load_checkpoint(start, trained_tiny.encoder)
    assert NEW in trained_structures(tuned.config) and tuned.config.learned_prompts == (NEW,)
    old = served.state_dict()
    assert all(torch.equal(old[k], v) for k, v in tuned.state_dict().items() if k in old), "the network is frozen"

    case = trained_tiny.cases[0]
    image = EnsureChannelFirst()(LoadImage(image_only=True)(str(case.image)))
    label = np.asarray(LoadImage(image_only=True)(str(case.label))).round().astype(np.int32)
    known = ["liver", "spleen", "left kidney"]
    before_known = _answers(served, trained_tiny.encoder, image, known)
    assert np.array_equal(before_known, _answers(tuned, trained_tiny.encoder, image, known)), "known answers kept"
    untrained = with_learned_prompts(served, [NEW], trained_tiny.encoder)  # the learned prompt as it started
    truth = np.isin(label, case.targets[NEW])
    before = dice(_answers(untrained, trained_tiny.encoder, image, [NEW])[0] > 0.5, truth)
    after = dice(_answers(tuned, trained_tiny.encoder, image, [NEW])[0] > 0.5, truth)
    print({"before": round(before, 3), "after": round(after, 3)})
    assert after > before + 0.2, (before, after)
