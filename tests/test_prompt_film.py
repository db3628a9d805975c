"""Prompt FiLM in the label decoder (``ModelConfig.prompt_film``): off it changes nothing, on it starts as the
identity and lets one latent decode to different masks for different prompts."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from textdiffseg.checkpoint import load_checkpoint, save_checkpoint
from textdiffseg.config import tiny_config
from textdiffseg.diffusion.sampling import sample_masks
from textdiffseg.inference import prompt_slice
from textdiffseg.networks.model import TextDiffSeg

HIDDEN = 32
ROI = (16, 16, 16)


def _pair() -> tuple[TextDiffSeg, TextDiffSeg]:
    """A plain model and one with prompt FiLM with the same weights everywhere else."""
    torch.manual_seed(0)
    plain = TextDiffSeg(tiny_config(text_hidden_size=HIDDEN)).eval()
    filmed = TextDiffSeg(tiny_config(text_hidden_size=HIDDEN, prompt_film=True)).eval()
    missing, unexpected = filmed.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("prompt_film.") for k in missing)
    return plain, filmed


def _prompts(p: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    return torch.randn(p, 4, HIDDEN), torch.ones(p, 4, dtype=torch.bool)


def test_new_prompt_film_computes_what_the_model_without_it_computes() -> None:
    plain, filmed = _pair()
    image = torch.rand(1, 1, *ROI)
    tokens, mask = _prompts()
    with torch.no_grad():
        before, after = plain.condition(image, tokens, mask), filmed.condition(image, tokens, mask)
        assert before.text is None and after.text is not None and after.text.shape == (2, filmed.config.text_dim)
        latent = filmed.encode_label((torch.rand(2, 1, *ROI) > 0.5).float())
        torch.testing.assert_close(filmed.decode_label(latent, after), plain.decode_label(latent, before))
        draws = [
            sample_masks(m, c, steps=2, ensemble=2, generator=torch.Generator().manual_seed(0)).probability
            for m, c in ((plain, before), (filmed, after))
        ]
    torch.testing.assert_close(draws[0], draws[1])


def test_prompt_film_gives_each_prompt_its_own_decoder_and_survives_slicing_and_checkpoints(tmp_path) -> None:
    plain, filmed = _pair()
    torch.manual_seed(2)
    for film in filmed.prompt_film.films:
        torch.nn.init.normal_(film.weight, std=0.5)
    image = torch.rand(1, 1, *ROI)
    tokens, mask = _prompts()
    latent = torch.zeros(1, filmed.latent_channels, *(s // filmed.config.downsample for s in ROI)).repeat(2, 1, 1, 1, 1)
    with torch.no_grad():
        same = plain.decode_label(latent, plain.condition(image, tokens, mask))
        condition = filmed.condition(image, tokens, mask)
        own = filmed.decode_label(latent, condition)
        torch.testing.assert_close(same[0], same[1])  # without FiLM one latent is one mask, whatever the prompt
        assert not torch.allclose(own[0], own[1])
        second = prompt_slice(condition, 1, 2)
        torch.testing.assert_close(filmed.decode_label(latent[1:], second), own[1:])
        save_checkpoint(tmp_path / "filmed.pt", filmed)
        loaded, _ = load_checkpoint(tmp_path / "filmed.pt")
        assert loaded.config.prompt_film
        torch.testing.assert_close(loaded.eval().decode_label(latent, loaded.condition(image, tokens, mask)), own)


def test_prompt_film_alone_learns_two_prompts_apart_from_one_latent() -> None:
    """Everything but the FiLM frozen and one latent for both prompts: only the FiLM can tell "bright" from "dark"."""
    _, filmed = _pair()
    torch.manual_seed(3)
    bright = torch.zeros(1, 1, *ROI, dtype=torch.bool)
    bright[..., : ROI[0] // 2, :, :] = True  # one half of the patch bright, the other dark
    image = bright.float() * 0.8 + 0.1 + 0.05 * torch.randn(1, 1, *ROI)
    targets = torch.cat([bright, ~bright]).float()  # (2, 1, *ROI): "bright" for one prompt, "dark" for the other
    tokens, mask = _prompts()
    latent = torch.zeros(2, filmed.latent_channels, *(s // filmed.config.downsample for s in ROI))
    for p in filmed.parameters():
        p.requires_grad_(False)
    trainable = list(filmed.prompt_film.parameters())
    for p in trainable:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(trainable, lr=5e-2)

    def agreement() -> float:
        with torch.no_grad():
            masks = filmed.decode_label(latent, filmed.condition(image, tokens, mask)) > 0
        return float((masks == targets.bool()).float().mean())

    start = agreement()
    for _ in range(60):
        optimizer.zero_grad()
        logits = filmed.decode_label(latent, filmed.condition(image, tokens, mask))
        F.binary_cross_entropy_with_logits(logits, targets).backward()
        optimizer.step()
    assert start <= 0.55, start  # one mask for two complementary targets is right on half the voxels at most
    final = agreement()
    assert final > 0.9, (start, final)
