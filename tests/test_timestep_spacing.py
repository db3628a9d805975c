"""Where inference steps sit on the training timesteps (``ModelConfig.timestep_spacing``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from textdiffseg import set_sampling
from textdiffseg.checkpoint import CheckpointError, read_checkpoint, read_config, rewrite_config, save_checkpoint
from textdiffseg.config import ModelConfig, tiny_config
from textdiffseg.diffusion.sampling import sample_masks
from textdiffseg.diffusion.schedule import make_scheduler, set_inference_timesteps
from textdiffseg.networks.model import TextDiffSeg

HIDDEN = 32


@pytest.mark.parametrize(
    ("spacing", "steps", "expected"),
    [
        ("leading", 1, [0]),
        ("leading", 5, [800, 600, 400, 200, 0]),
        ("trailing", 1, [999]),
        ("trailing", 2, [999, 499]),
        ("trailing", 5, [999, 799, 599, 399, 199]),
    ],
)
def test_inference_timesteps(spacing: str, steps: int, expected: list[int]) -> None:
    config = ModelConfig(timestep_spacing=spacing)
    assert set_inference_timesteps(make_scheduler(config), config, steps).tolist() == expected


def test_leading_is_the_default_so_older_checkpoints_sample_as_before() -> None:
    assert ModelConfig().timestep_spacing == "leading"
    assert ModelConfig.from_json('{"sampling_steps": 5}').timestep_spacing == "leading"


def test_unknown_spacing_is_refused() -> None:
    with pytest.raises(ValueError, match="timestep_spacing"):
        ModelConfig(timestep_spacing="linspace").validate()


@pytest.mark.parametrize(("spacing", "called_at"), [("leading", [0]), ("trailing", [999])])
def test_one_step_sampling_asks_the_denoiser_at_the_spacings_timestep(spacing: str, called_at: list[int]) -> None:
    """One trailing step denoises pure noise at t = T - 1 and returns that call's clean estimate."""
    torch.manual_seed(0)
    model = TextDiffSeg(tiny_config(text_hidden_size=HIDDEN, timestep_spacing=spacing)).eval()
    seen: list[int] = []
    outputs: list[torch.Tensor] = []
    denoise = model.denoise

    def recording(latent: torch.Tensor, t: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
        seen.extend(int(v) for v in t.unique())
        outputs.append(denoise(latent, t, fused))
        return outputs[-1]

    model.denoise = recording  # type: ignore[method-assign]
    tokens, mask = torch.randn(1, 4, HIDDEN), torch.ones(1, 4, dtype=torch.bool)
    with torch.no_grad():
        condition = model.condition(torch.rand(1, 1, 48, 48, 40), tokens, mask)
        result = sample_masks(model, condition, steps=1)
        expected = torch.sigmoid(model.decode_label(outputs[0].clamp(-1, 1), condition))
    assert seen == called_at
    torch.testing.assert_close(result.probability, expected)


def _saved(path: Path, fine: bool = False) -> Path:
    torch.manual_seed(0)
    model = TextDiffSeg(tiny_config(text_hidden_size=HIDDEN))
    stage = TextDiffSeg(tiny_config(text_hidden_size=HIDDEN, prior_channels=1)) if fine else None
    return save_checkpoint(path, model, extra={"step": 7}, fine_stage=stage)


def test_rewrite_changes_only_the_config_of_the_model_and_its_fine_stage(tmp_path: Path) -> None:
    src = _saved(tmp_path / "a.pt", fine=True)
    before = src.read_bytes()
    out = rewrite_config(src, tmp_path / "b.pt", sampling_steps=1, timestep_spacing="trailing")
    assert src.read_bytes() == before
    old, new = read_checkpoint(src), read_checkpoint(out)
    for part_old, part_new in [(old, new), (old["fine_stage"], new["fine_stage"])]:
        config = ModelConfig.from_json(part_new["config"])
        assert (config.sampling_steps, config.timestep_spacing) == (1, "trailing")
        assert ModelConfig.from_json(part_old["config"]).sampling_steps == 3  # the tiny preset's
        assert part_new["state_dict"].keys() == part_old["state_dict"].keys()
        assert all(torch.equal(part_new["state_dict"][k], v) for k, v in part_old["state_dict"].items())
    assert new["extra"] == {"step": 7}


def test_rewrite_refuses_a_bad_value_and_writes_nothing(tmp_path: Path) -> None:
    src = _saved(tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match="sampling_steps must be >= 1"):
        rewrite_config(src, tmp_path / "b.pt", sampling_steps=0)
    with pytest.raises(CheckpointError, match="no_such_field"):
        rewrite_config(src, tmp_path / "b.pt", no_such_field=1)
    assert not (tmp_path / "b.pt").exists()


def test_set_sampling_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _saved(tmp_path / "a.pt")
    assert set_sampling.main([str(src), "--out", str(src), "--steps", "2"]) == 0
    assert (read_config(src).sampling_steps, read_config(src).timestep_spacing) == (2, "trailing")
    assert set_sampling.main([str(src), "--out", str(tmp_path / "b.pt"), "--steps", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert set_sampling.main([str(tmp_path / "missing.pt"), "--out", str(tmp_path / "b.pt"), "--steps", "1"]) == 2
    assert "does not exist" in capsys.readouterr().err
