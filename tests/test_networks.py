"""Shapes through every module, the cross-attention padding mask, and the ablation switches."""

from __future__ import annotations

import pytest
import torch

from textdiffseg.config import PRESETS, ModelConfig, preset_config, tiny_config
from textdiffseg.diffusion.sampling import sample_masks
from textdiffseg.diffusion.schedule import make_scheduler
from textdiffseg.networks.cross_attention import CrossModalAttention3D
from textdiffseg.networks.model import TextDiffSeg

HIDDEN = 32


def _model(**overrides: object) -> TextDiffSeg:
    torch.manual_seed(0)
    return TextDiffSeg(tiny_config(text_hidden_size=HIDDEN, **overrides)).eval()


def _tokens(p: int, length: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randn(p, length, HIDDEN)
    mask = torch.ones(p, length, dtype=torch.bool)
    mask[0, 3:] = False  # prompts of different lengths are padded
    return tokens, mask


@pytest.mark.parametrize("roi", [(48, 48, 40), (16, 24, 8), (40, 8, 32)])
def test_shapes_through_every_module(roi: tuple[int, int, int]) -> None:
    model = _model()
    p, f, k = 3, model.config.downsample, model.latent_channels
    image = torch.rand(1, 1, *roi)
    tokens, mask = _tokens(p)
    with torch.no_grad():
        z_image, skips = model.image_encoder(image)
        assert z_image.shape == (1, model.config.fused_channels, *(s // f for s in roi))
        assert [s.shape[2:] for s in skips] == [tuple(r // 2 for r in roi)]
        condition = model.condition(image, tokens, mask)
        assert condition.fused.shape == (p, model.config.fused_channels, *(s // f for s in roi))
        masks = (torch.rand(p, 1, *roi) > 0.5).float()
        latent = model.encode_label(masks)
        assert latent.shape == (p, k, *(s // f for s in roi))
        assert latent.abs().max() <= 1.0
        assert model.denoise(latent, torch.tensor([10, 500, 999]), condition.fused).shape == latent.shape
        assert model.decode_label(latent, condition).shape == (p, 1, *roi)
        out = model(
            image, tokens, mask, masks, torch.randn_like(latent), torch.tensor([1, 2, 3]), make_scheduler(model.config)
        )
        assert out.logits.shape == out.recon_logits.shape == (p, 1, *roi)
        result = sample_masks(model, condition, steps=2, ensemble=2)
        assert result.probability.shape == result.variance.shape == result.entropy.shape == (p, 1, *roi)
        assert float(result.probability.min()) >= 0.0 and float(result.probability.max()) <= 1.0


def test_cross_attention_ignores_padding_tokens() -> None:
    torch.manual_seed(0)
    attention = CrossModalAttention3D(channels=24, text_dim=16, heads=2)
    z = torch.randn(1, 24, 4, 5, 3)
    tokens = torch.randn(2, 6, 16)
    mask = torch.tensor([[True, True, True, False, False, False], [True] * 6])
    out = attention(z, tokens, mask)
    changed = tokens.clone()
    changed[0, 3:] = torch.randn(3, 16) * 100  # garbage where the mask says padding
    out_changed = attention(z, changed, mask)
    torch.testing.assert_close(out[0], out_changed[0])
    changed[0, 1] += 1.0  # a real token does matter
    assert not torch.allclose(attention(z, changed, mask)[0], out[0])


def test_cross_attention_is_residual_and_per_prompt() -> None:
    torch.manual_seed(0)
    attention = CrossModalAttention3D(channels=8, text_dim=8, heads=2)
    z = torch.randn(1, 8, 3, 3, 3)
    tokens = torch.randn(2, 4, 8)
    out = attention(z, tokens, torch.ones(2, 4, dtype=torch.bool))
    assert out.shape == (2, 8, 3, 3, 3)
    assert not torch.allclose(out[0], out[1]), "different prompts must give different fused features"
    with pytest.raises(ValueError, match="divisible"):
        CrossModalAttention3D(channels=10, text_dim=8, heads=4)


@pytest.mark.parametrize("switch", ["use_text_fusion", "use_image_encoder", "use_label_encoder"])
def test_ablations_build_and_run(switch: str) -> None:
    model = _model(**{switch: False})
    tokens, mask = _tokens(2)
    image = torch.rand(1, 1, 16, 16, 16)
    with torch.no_grad():
        result = sample_masks(model, model.condition(image, tokens, mask), steps=2)
    assert result.probability.shape == (2, 1, 16, 16, 16)
    full = sum(p.numel() for p in _model().parameters())
    assert sum(p.numel() for p in model.parameters()) != full


def test_config_validation_and_json_round_trip() -> None:
    config = tiny_config(text_hidden_size=HIDDEN)
    assert ModelConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="divisible"):
        TextDiffSeg(tiny_config(roi_size=(50, 48, 40)))
    with pytest.raises(ValueError, match="unknown fields"):
        ModelConfig.from_json('{"no_such_field": 1}')


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_runs_and_fits_the_checkpoint_limit(name: str) -> None:
    config = preset_config(name, text_hidden_size=HIDDEN)
    model = TextDiffSeg(config).eval()
    megabytes = sum(p.numel() for p in model.parameters()) * 4 / 1e6
    assert megabytes <= 30.0, f"preset {name} is {megabytes:.1f} MB of weights, over the 30 MB checkpoint limit"
    roi = tuple(2 * config.downsample for _ in range(3))  # a small window: the point is that the modules fit
    tokens, mask = _tokens(2)
    with torch.no_grad():
        condition = model.condition(torch.rand(1, 1, *roi), tokens, mask)
        assert sample_masks(model, condition, steps=1).probability.shape == (2, 1, *roi)


def test_wider_presets_have_more_parameters_on_the_same_grid() -> None:
    sizes = {n: sum(p.numel() for p in TextDiffSeg(preset_config(n)).parameters()) for n in ("small", "medium", "wide")}
    assert sizes["small"] < sizes["medium"] < sizes["wide"]
    grids = {(preset_config(n).spacing, preset_config(n).roi_size) for n in ("small", "medium", "wide")}
    assert len(grids) == 1
