"""Zoom-out-zoom-in: the fine stage (config, checkpoint, training prior) and the fine pass of the Segmenter."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from textdiffseg.checkpoint import load_checkpoint, load_fine_stage, read_checkpoint, save_checkpoint
from textdiffseg.coarse_prior import MAX_SHIFT, simulate_coarse_prior
from textdiffseg.config import FINE_STAGE, tiny_config
from textdiffseg.fine_stage import as_fine_stage
from textdiffseg.fine_stage import main as join_stages
from textdiffseg.inference import Segmenter
from textdiffseg.networks.model import TextDiffSeg
from textdiffseg.prompt_match import record_trained_structures, trained_structures
from textdiffseg.service import SegmentationService, ServiceOptions
from textdiffseg.text.encoder import TextEncoder
from textdiffseg.train_loop import TrainOptions, run_training
from textdiffseg.train_step import Trainer
from textdiffseg.zoom_in import coarse_box, input_box


def _whole(encoder: TextEncoder, seed: int = 0) -> TextDiffSeg:
    torch.manual_seed(seed)
    config = tiny_config(text_hidden_size=encoder.hidden_size, text_fingerprint=encoder.fingerprint)
    return TextDiffSeg(config).eval()


def test_coarse_box_grows_the_region_by_the_margin_and_stays_on_the_grid() -> None:
    region = np.zeros((20, 20, 10), bool)
    region[5:8, 10:12, 0:2] = True
    box = coarse_box(region, (5.0, 5.0, 5.0), margin_mm=10.0)
    assert box == (slice(3, 10), slice(8, 14), slice(0, 4))
    assert coarse_box(np.zeros((4, 4, 4), bool), (5.0, 5.0, 5.0)) is None


def test_input_box_covers_the_same_millimetres_on_a_flipped_finer_grid() -> None:
    coarse_affine = np.diag([5.0, 5.0, 5.0, 1.0])
    # LPS input at 1 mm: x and y run the other way, origin at (99, 99, 0) mm
    input_affine = np.array([[-1.0, 0, 0, 99], [0, -1.0, 0, 99], [0, 0, 1.0, 0], [0, 0, 0, 1]])
    box = input_box((slice(2, 4), slice(0, 1), slice(1, 3)), coarse_affine, input_affine, (100, 100, 100))
    # coarse voxels 2..3 along x span 7.5..17.5 mm -> input index 99 - x: 81.5..91.5 -> voxels 82..91
    assert (box[0].start, box[0].stop) == (82, 92)
    assert box[1].stop == 100  # clipped at the grid's edge
    assert (box[2].start, box[2].stop) == (3, 13)  # 2.5..12.5 mm


def _centre(mask: torch.Tensor) -> np.ndarray:
    grid = np.indices(mask.shape[1:]).reshape(3, -1)
    weights = mask[0].numpy().ravel()
    return (grid * weights).sum(1) / weights.sum()


def test_the_simulated_prior_follows_the_target_and_is_seeded() -> None:
    targets = torch.zeros(40, 1, 32, 32, 24)
    targets[:20, 0, 8:20, 8:22, 6:16] = 1.0  # 20 prompts of a present structure, 20 of an absent one
    first = simulate_coarse_prior(targets, torch.Generator().manual_seed(3))
    again = simulate_coarse_prior(targets, torch.Generator().manual_seed(3))
    assert torch.equal(first, again)
    present, absent = first[:20], first[20:]
    given = [p for p in present if p.sum() > 0]
    assert 10 <= len(given) < 20  # most present structures get a prior, some are missed (as lesions are)
    target_centre = _centre(targets[0])
    for prior in given:  # around the target: shifted by at most MAX_SHIFT voxels (+ the pooling's half voxel)
        assert (np.abs(_centre(prior) - target_centre) <= MAX_SHIFT + 1).all()
        assert ((prior > 0) & (targets[0] > 0)).sum() / targets[0].sum() > 0.25  # overlaps it
    assert sum(int(p.sum() > 0) for p in absent) < 10  # absent structures mostly get none
    assert float(first.max()) <= 1.0 and float(first.min()) >= 0.0


def test_a_new_fine_stage_computes_what_the_whole_model_computes(tiny_encoder: TextEncoder) -> None:
    whole = _whole(tiny_encoder)
    fine = as_fine_stage(whole).eval()
    assert fine.takes_prior and fine.config.spacing == FINE_STAGE["spacing"]
    image = torch.rand(1, 1, 64, 64, 40)
    tokens, mask = tiny_encoder.encode(["liver", "spleen"])
    prior = torch.rand(2, 1, 64, 64, 40)
    with torch.no_grad():
        a = whole.condition(image, tokens, mask)
        b = fine.condition(image, tokens, mask, prior=prior)
    assert torch.equal(a.fused, b.fused)  # the prior branch starts at zero
    with pytest.raises(ValueError, match="coarse prior"):
        fine.condition(image, tokens, mask)
    with pytest.raises(ValueError, match="coarse prior"):
        whole.condition(image, tokens, mask, prior=prior)


def test_the_fine_stage_learns_to_use_the_prior(tiny_encoder: TextEncoder) -> None:
    """A few steps on one batch move the prior branch off zero and lower the loss."""
    fine = as_fine_stage(_whole(tiny_encoder, seed=1))
    trainer = Trainer(fine, tiny_encoder, lr=3e-3, seed=0)
    image = torch.rand(1, 1, 32, 32, 24)
    targets = torch.zeros(2, 1, 32, 32, 24)
    targets[0, 0, 8:20, 10:24, 6:18] = 1.0
    batch = [(image, ["liver", "spleen"], targets)]
    losses = [trainer.step(batch)["loss"] for _ in range(60)]
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    assert float(fine.prior_encoder.out.weight.abs().sum()) > 0


def test_both_stages_travel_in_one_checkpoint(tiny_encoder: TextEncoder, tmp_path: Path) -> None:
    whole = _whole(tiny_encoder)
    fine = as_fine_stage(_whole(tiny_encoder, seed=2))
    save_checkpoint(tmp_path / "whole.pt", whole)
    save_checkpoint(tmp_path / "fine.pt", fine)
    assert load_fine_stage(tmp_path / "whole.pt") is None
    assert (
        join_stages(
            [
                "--coarse",
                str(tmp_path / "whole.pt"),
                "--fine",
                str(tmp_path / "fine.pt"),
                "--out",
                str(tmp_path / "both.pt"),
            ]
        )
        == 0
    )
    loaded = load_fine_stage(tmp_path / "both.pt")
    assert loaded is not None and loaded.takes_prior
    for key, value in fine.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    assert "fine_stage" in read_checkpoint(tmp_path / "both.pt")
    # the fine pass can be limited to some of the structures the fine stage learned, never to others
    record_trained_structures(fine.config, ["liver", "pancreas"])
    save_checkpoint(tmp_path / "fine.pt", fine)
    only = ["--coarse", str(tmp_path / "whole.pt"), "--fine", str(tmp_path / "fine.pt"), "--out"]
    assert join_stages([*only, str(tmp_path / "some.pt"), "--structure", "pancreas"]) == 0
    assert trained_structures(load_fine_stage(tmp_path / "some.pt").config) == ("pancreas",)
    assert join_stages([*only, str(tmp_path / "other.pt"), "--structure", "spleen"]) == 2
    assert not (tmp_path / "other.pt").exists()
    # the two stages swapped is refused with one line, nothing written
    assert (
        join_stages(
            [
                "--coarse",
                str(tmp_path / "fine.pt"),
                "--fine",
                str(tmp_path / "whole.pt"),
                "--out",
                str(tmp_path / "bad.pt"),
            ]
        )
        == 2
    )
    assert not (tmp_path / "bad.pt").exists()


class CoarseLiver(Segmenter):
    """A coarse pass that finds "liver" in a fixed block and nothing else (the fine stage is a real network)."""

    def segment_volume(self, volume, prompts, clicks=None):  # noqa: ANN001, ANN201 - test double
        probability = torch.zeros(len(prompts), *volume.shape[1:])
        for i, prompt in enumerate(prompts):
            if prompt == "liver":
                probability[i, 4:8, 4:9, 3:6] = 0.9
        return probability, torch.zeros_like(probability)

    def predict_normalized(self, volume, prompts, clicks=None, prior=None):  # noqa: ANN001, ANN201
        if self.config.prior_channels:  # the fine stage runs for real
            return super().predict_normalized(volume, prompts, clicks, prior)
        probability, entropy = self.segment_volume(volume, prompts)
        return torch.stack([probability, torch.zeros_like(probability), entropy])


def _ct() -> MetaTensor:
    """A 60 x 60 x 40 CT at 2 mm, LPS (x and y flipped), soft tissue with a brighter block."""
    image = torch.full((1, 60, 60, 40), 40.0)
    image[:, 20:40, 20:45, 10:30] = 120.0
    affine = torch.tensor([[-2.0, 0, 0, 118], [0, -2.0, 0, 118], [0, 0, 2.0, 0], [0, 0, 0, 1]])
    return MetaTensor(image, affine=affine)


def _segmenter(encoder: TextEncoder, fine_pass: bool = True, budget: int | None = None) -> CoarseLiver:
    whole = _whole(encoder)
    record_trained_structures(whole.config, ["liver", "liver tumor"])
    fine = as_fine_stage(_whole(encoder, seed=4)).eval()
    record_trained_structures(fine.config, ["liver", "liver tumor"])
    return CoarseLiver(
        whole, encoder, unknown_below=None, fine_stage=fine, fine_pass=fine_pass, max_denoiser_calls=budget
    )


def test_the_fine_pass_changes_masks_inside_their_region_only(tiny_encoder: TextEncoder) -> None:
    image = _ct()
    coarse = _segmenter(tiny_encoder, fine_pass=False).predict(image, ["liver", "spleen"])
    zoomed = _segmenter(tiny_encoder).predict(image, ["liver", "spleen"])
    assert coarse.passes == [["coarse"], ["coarse"]]
    assert zoomed.passes == [["coarse", "fine"], ["coarse"]]  # spleen: not a structure the fine stage knows
    changed = np.argwhere(np.abs(zoomed.probability[0] - coarse.probability[0]) > 1e-6)
    assert len(changed)  # the fine stage did run
    liver = np.argwhere(coarse.probability[0] > 0.5)
    # 6 mm coarse voxels on 2 mm input: the box is the coarse block plus the 15 mm margin, in input voxels
    reach = 3 * 3 + 15 / 2 + 3
    assert (changed.min(0) >= liver.min(0) - reach).all() and (changed.max(0) <= liver.max(0) + reach).all()
    assert np.array_equal(zoomed.probability[1], coarse.probability[1])


def test_a_lesion_is_searched_for_in_its_organ_even_when_the_request_names_only_the_lesion(
    tiny_encoder: TextEncoder,
) -> None:
    segmenter = _segmenter(tiny_encoder)
    organ_passes = []
    segment_organs = segmenter.segment_organs
    segmenter.segment_organs = lambda volume, organs: organ_passes.append(organs) or segment_organs(volume, organs)  # type: ignore[method-assign]
    prediction = segmenter.predict(_ct(), ["liver tumor"])
    # the coarse tumour is empty; the liver's region is used, segmented once (post-processing and zoom-in share it)
    assert prediction.passes == [["coarse", "organ", "fine"]] and organ_passes == [["liver"]]


def test_a_fine_pass_over_the_budget_is_skipped_with_a_note(tiny_encoder: TextEncoder) -> None:
    segmenter = _segmenter(tiny_encoder, budget=None)
    coarse_calls = segmenter.denoiser_calls(1, (20, 20, 14))  # the coarse grid of _ct() at 6 mm
    prediction = _segmenter(tiny_encoder, budget=coarse_calls).predict(_ct(), ["liver"])
    assert prediction.passes == [["coarse"]]
    assert "over what the budget leaves" in prediction.zoom_notes[0]


def test_a_search_region_over_the_budget_is_skipped_with_a_note(tiny_encoder: TextEncoder) -> None:
    coarse_calls = _segmenter(tiny_encoder).denoiser_calls(1, (20, 20, 14))
    # the lesion's own coarse pass fits; the coarse pass of its organ ("liver", not asked for) does not (without
    # post-processing: with it, the organ is segmented for the lesion anyway and the budget counts it up front)
    segmenter = _segmenter(tiny_encoder, budget=coarse_calls)
    segmenter.postprocess = False
    prediction = segmenter.predict(_ct(), ["liver tumor"])
    assert prediction.passes == [["coarse"]]
    assert "search region is over what the budget leaves" in prediction.zoom_notes[0]


def test_nothing_found_means_no_fine_pass(tiny_encoder: TextEncoder) -> None:
    segmenter = _segmenter(tiny_encoder)
    segmenter.fine.config = replace(segmenter.fine.config)  # the fine stage knows spleen too
    record_trained_structures(segmenter.fine.config, ["liver", "liver tumor", "spleen"])
    prediction = segmenter.predict(_ct(), ["spleen"])
    assert prediction.passes == [["coarse"]]
    assert "found nothing" in prediction.zoom_notes[0]


def test_the_service_serves_both_stages_and_honours_fine_pass(tiny_encoder: TextEncoder, tmp_path: Path) -> None:
    whole = _whole(tiny_encoder)
    with torch.no_grad():
        whole.label_decoder.head.bias.fill_(10.0)  # the coarse pass finds "liver" everywhere
    record_trained_structures(whole.config, ["liver"])
    fine = as_fine_stage(_whole(tiny_encoder, seed=5))
    record_trained_structures(fine.config, ["liver"])
    save_checkpoint(tmp_path / "both.pt", whole, fine_stage=fine)
    options = ServiceOptions(text_encoder=str(tiny_encoder.name), max_denoiser_calls=None)
    service = SegmentationService([tmp_path / "both.pt"], options)
    image = _ct()
    assert service.segment(image, ["liver"]).passes == [["coarse", "fine"]]
    assert service.segment(image, ["liver"], fine_pass=False).passes == [["coarse"]]
    off = SegmentationService([tmp_path / "both.pt"], replace(options, fine_pass=False))
    assert off.segment(image, ["liver"]).passes == [["coarse"]]


def test_retraining_keeps_the_fine_stage_and_a_fine_run_makes_one(
    train_phantom_dir: Path, tiny_encoder: TextEncoder, tmp_path: Path
) -> None:
    base = TrainOptions(
        data=train_phantom_dir, out=tmp_path / "base", steps=1, preset="tiny", prompts_per_volume=2, progress=False
    )
    run_training(base, encoder=tiny_encoder)
    whole, _ = load_checkpoint(tmp_path / "base" / "model.pt", tiny_encoder)
    fine = as_fine_stage(whole)
    save_checkpoint(tmp_path / "both.pt", whole, fine_stage=fine)
    retrained = replace(base, out=tmp_path / "retrained", init_from=tmp_path / "both.pt")
    run_training(retrained, encoder=tiny_encoder)
    kept = load_fine_stage(tmp_path / "retrained" / "model.pt")
    assert kept is not None
    assert all(torch.equal(kept.state_dict()[k], v) for k, v in fine.state_dict().items())
    # --stage fine from a whole-CT model: a fine stage that records only what it was trained on here
    staged = replace(
        base, out=tmp_path / "fine", init_from=tmp_path / "base" / "model.pt", stage="fine", structures=("liver",)
    )
    summary = run_training(staged, encoder=tiny_encoder)
    made, _ = load_checkpoint(summary["model"], tiny_encoder)
    assert made.takes_prior and trained_structures(made.config) == ("liver",)
