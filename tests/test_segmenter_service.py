"""The library end of ``/infer``: label maps with the caller's values, the compute budget, the checkpoint service."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.inferers import sliding_window_inference

from textdiffseg.checkpoint import CheckpointError, save_checkpoint
from textdiffseg.config import tiny_config
from textdiffseg.inference import (
    ComputeBudgetError,
    InvalidInputError,
    Segmenter,
    WholeVolumePipeline,
    sliding_window_count,
)
from textdiffseg.label_fusion import label_map_from_probabilities
from textdiffseg.networks.model import TextDiffSeg
from textdiffseg.service import SegmentationService, ServiceOptions
from textdiffseg.text.encoder import TextEncoder


def _ct(shape: tuple[int, int, int] = (16, 16, 12), spacing: float = 6.0) -> MetaTensor:
    image = torch.linspace(-200, 300, int(np.prod(shape))).reshape(1, *shape)
    return MetaTensor(image, affine=torch.diag(torch.tensor([spacing, spacing, spacing, 1.0])))


class Halves(WholeVolumePipeline):
    """Prompt 0 covers the first half of axis 0, prompt 1 the second; prompt 1 is more confident where both are."""

    def segment_volume(self, volume: torch.Tensor, prompts: list[str]) -> tuple[torch.Tensor, None]:
        maps = torch.zeros(len(prompts), *volume.shape[1:])
        half = volume.shape[1] // 2
        maps[0, : half + 1] = 0.8
        maps[1, half:] = 0.9
        return maps, None


def test_the_label_map_carries_the_callers_values() -> None:
    prediction = Halves((6.0, 6.0, 6.0), (-200.0, 300.0)).predict(_ct(), ["liver", "spleen"], values=[7, 3])
    assert prediction.label_map.dtype == np.uint8 and set(np.unique(prediction.label_map)) == {3, 7}
    assert (prediction.label_map == label_map_from_probabilities(prediction.probability, [7, 3])).all()
    assert not prediction.uncertainty.any()
    default = Halves((6.0, 6.0, 6.0), (-200.0, 300.0)).predict(_ct(), ["liver", "spleen"])
    assert set(np.unique(default.label_map)) == {1, 2}
    with pytest.raises(ValueError, match="1..255"):
        Halves((6.0, 6.0, 6.0), (-200.0, 300.0)).predict(_ct(), ["liver", "spleen"], values=[1, 256])


@pytest.mark.parametrize("shape", [(10, 10, 10), (48, 48, 40), (49, 100, 41), (130, 61, 200)])
def test_window_count_matches_monai(shape: tuple[int, int, int]) -> None:
    calls = []

    def predictor(window: torch.Tensor) -> torch.Tensor:
        calls.append(window.shape[0])
        return window

    sliding_window_inference(torch.zeros(1, 1, *shape), (48, 48, 40), 1, predictor, overlap=0.25)
    assert sliding_window_count(shape, (48, 48, 40), 0.25) == sum(calls)


def _tiny_model(encoder: TextEncoder, name: str) -> TextDiffSeg:
    torch.manual_seed(0)
    return TextDiffSeg(
        tiny_config(text_encoder=name, text_hidden_size=encoder.hidden_size, text_fingerprint=encoder.fingerprint)
    )


def test_requests_over_the_compute_budget_are_refused_before_sampling(tiny_encoder: TextEncoder) -> None:
    model = _tiny_model(tiny_encoder, tiny_encoder.name)
    segmenter = Segmenter(model, tiny_encoder, steps=3, ensemble=2, max_denoiser_calls=11)
    segmenter.predict_normalized = None  # type: ignore[assignment] - sampling must not start
    with pytest.raises(ComputeBudgetError) as caught:
        segmenter.predict(_ct((20, 20, 20)), ["liver", "spleen"])  # 2 x 2 x 3 x 1 window = 12
    message = str(caught.value)
    assert isinstance(caught.value, InvalidInputError)
    for part in ("12 denoiser calls", "2 prompt(s)", "ensemble 2", "3 sampling steps", "1 sliding window", "11"):
        assert part in message
    assert "fewer prompts" in message
    within = Segmenter(model, tiny_encoder, steps=3, ensemble=2, max_denoiser_calls=12)
    assert within.predict(_ct((20, 20, 20)), ["liver", "spleen"]).label_map.shape == (20, 20, 20)


def test_a_lesion_alone_costs_a_pass_of_its_organ(tiny_encoder: TextEncoder) -> None:
    """ "kidney tumor" alone is kept inside a "kidney" the model segments for it: the budget counts that pass."""
    model = _tiny_model(tiny_encoder, tiny_encoder.name)
    segmenter = Segmenter(model, tiny_encoder, steps=3, ensemble=2, max_denoiser_calls=11)
    assert segmenter.region_organs(["kidney tumor", "lung tumor", "liver tumor", "liver"]) == ["kidney"]
    with pytest.raises(ComputeBudgetError, match=r"1 prompt\(s\) \+ 1 organ\(s\) for lesions"):
        segmenter.predict(_ct((20, 20, 20)), ["kidney tumor"])  # (1 + 1) x 2 x 3 x 1 window = 12
    within = Segmenter(model, tiny_encoder, steps=3, ensemble=2, max_denoiser_calls=12)
    assert within.predict(_ct((20, 20, 20)), ["kidney tumor"]).passes == [["coarse", "organ"]]
    assert within.predict(_ct((20, 20, 20)), ["kidney tumor", "kidney"]).passes == [["coarse"], ["coarse"]]


def test_many_samples_are_drawn_in_prompt_groups_with_the_same_answer_per_prompt(tiny_encoder: TextEncoder) -> None:
    """Over ``MAX_SAMPLES_PER_WINDOW`` samples a window is sampled in groups of prompts (bounded memory)."""
    model = _tiny_model(tiny_encoder, tiny_encoder.name)
    prompts = ["liver", "spleen", "aorta"]
    volume = torch.rand(1, 20, 20, 20)
    grouped = Segmenter(model, tiny_encoder, steps=2, ensemble=32, seed=3).predict_normalized(volume, prompts)
    assert grouped.shape == (3, 3, 20, 20, 20) and torch.isfinite(grouped).all()
    alone = Segmenter(model, tiny_encoder, steps=2, ensemble=32, seed=3).predict_normalized(volume, prompts[:2])
    torch.testing.assert_close(grouped[:, :2], alone)  # 2 x 32 = 64: the first group is the same draw


def test_the_service_follows_the_last_existing_candidate(
    tmp_path: Path, tiny_bert_dir: Path, tiny_encoder: TextEncoder
) -> None:
    pretrained, trained = tmp_path / "pretrained.pt", tmp_path / "trained.pt"
    service = SegmentationService([pretrained, trained], ServiceOptions(how_to_train="train it"))
    with pytest.raises(CheckpointError, match=f"no model checkpoint in {tmp_path}: train it or put trained.pt or"):
        service.model()
    save_checkpoint(pretrained, _tiny_model(tiny_encoder, str(tiny_bert_dir)))
    first, encoder = service.model()
    assert service.checkpoint() == pretrained and service.model()[0] is first
    save_checkpoint(trained, _tiny_model(tiny_encoder, str(tiny_bert_dir)))
    second, same_encoder = service.model()
    assert second is not first and same_encoder is encoder, "a new path reloads; the encoder is reused"
    os.utime(trained, (1, 1))
    assert service.model()[0] is not second, "a new mtime reloads"
    prediction = service.segment(_ct(), ["liver"], values=[5], ensemble=1, steps=1)
    assert set(np.unique(prediction.label_map)) <= {0, 5}
    budgeted = SegmentationService([trained], ServiceOptions(max_denoiser_calls=1))
    with pytest.raises(ComputeBudgetError):
        budgeted.segment(_ct(), ["liver", "spleen"], steps=1)
    assert budgeted.segment(_ct(), ["liver", "spleen"], steps=1, budgeted=False).label_map.shape == (16, 16, 12)


def test_one_request_one_answer_and_a_prompts_noise_is_its_own(tiny_encoder: TextEncoder) -> None:
    """The same request gives the same bytes; a prompt's answer does not depend on the other prompts or their order
    (each prompt has its own noise stream, seeded from the request's seed and its text); another seed varies it."""
    model = _tiny_model(tiny_encoder, tiny_encoder.name)
    with torch.no_grad():  # untrained, the denoiser's zero-initialised output layer would ignore the noise
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.1)
    volume = torch.rand(1, 20, 20, 20, generator=torch.Generator().manual_seed(1))

    def run(prompts: list[str], seed: int = 0) -> torch.Tensor:
        return Segmenter(model, tiny_encoder, steps=2, ensemble=2, seed=seed).predict_normalized(volume, prompts)

    first = run(["liver", "spleen"])
    assert torch.equal(first, run(["liver", "spleen"]))
    torch.testing.assert_close(run(["spleen", "liver"])[:, [1, 0]], first)  # equal up to float batching
    torch.testing.assert_close(run(["liver"])[:, 0], first[:, 0])
    assert not torch.equal(run(["liver", "spleen"], seed=1), first)
