"""Training that generalises (issue 12 part 3): multi-window input, augmentation, mixed sources, wide phantoms."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.transforms import ScaleIntensityRange

from textdiffseg import train
from textdiffseg.augment import PatchAugmenter
from textdiffseg.checkpoint import load_checkpoint, read_config, save_checkpoint
from textdiffseg.config import MULTI_WINDOWS, ModelConfig, tiny_config
from textdiffseg.data.folders import load_folder
from textdiffseg.data.phantom import PhantomConfig, generate_case
from textdiffseg.data.vocabulary import PromptVocabulary
from textdiffseg.intensity import HUWindows
from textdiffseg.networks.model import TextDiffSeg
from textdiffseg.train_data import PromptedPatchSampler, prepare_cases
from textdiffseg.train_loop import TrainOptions, run_training, widen_input

SHIPPED = Path(__file__).resolve().parents[1] / "apps" / "textdiffseg_app" / "model" / "pretrained_textdiffseg.pt"


def _one_sided_case(shape: tuple[int, int, int] = (48, 40, 36)) -> tuple[torch.Tensor, torch.Tensor]:
    """HU volume: soft tissue (-100) with a bright (+200 HU) box in the low-index half of every axis (its label)."""
    label = torch.zeros(shape, dtype=torch.int16)
    label[6:20, 8:18, 6:16] = 1
    hu = torch.where(label.bool(), 200.0, -100.0)[None].float()
    return hu, label


def test_augmentation_keeps_label_and_image_aligned_and_never_flips() -> None:
    hu, label = _one_sided_case()
    augment = PatchAugmenter(((-200.0, 300.0), *MULTI_WINDOWS), seed=3)
    changed = 0
    for _ in range(40):
        image, out = augment(hu, label)
        assert image.shape == (3, *label.shape) and out.shape == label.shape and out.dtype == label.dtype
        assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
        mask = out.bool()
        assert mask.sum() > 0
        bright = image[0] > 0.5  # soft-tissue window: +200 HU stays above its middle, -100 HU below
        dice = 2 * float((bright & mask).sum()) / float(bright.sum() + mask.sum())
        assert dice > 0.8, "the label moved with the image"
        centre = torch.nonzero(mask).float().mean(0)
        for axis, size in enumerate(label.shape):  # a flip would move the box into the other half
            assert centre[axis] < size / 2, f"axis {axis} was mirrored"
        changed += int(not torch.equal(out, label))
    assert changed > 5, "spatial augmentation happens"
    a = PatchAugmenter(((-200.0, 300.0),), seed=11)(hu, label)
    b = PatchAugmenter(((-200.0, 300.0),), seed=11)(hu, label)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), "seeded"


def test_scan_range_augmentation_ends_the_scan_with_air_and_no_label_beyond() -> None:
    hu, label = _one_sided_case()
    label[30:40, 20:30, 20:36] = 2  # a second structure that reaches the top slice
    augment = PatchAugmenter(((-200.0, 300.0), *MULTI_WINDOWS), seed=5, scan_range_prob=1.0)
    depth = label.shape[-1]
    ends = set()
    for _ in range(30):
        image, out = augment(hu, torch.where(label > 0, label, 0).to(label.dtype))
        air = (image == 0).all(0).all(0).all(0)  # slices that are air in every window: beyond the scan's end
        kept = int((~air).sum())
        assert 0.3 * depth - 1 <= kept <= 0.9 * depth + 1, kept
        assert bool(air[0]) != bool(air[-1]), "the scan ends on one side"
        assert not out[..., air].any(), "nothing is labelled beyond the scan's end"
        ends.add("low" if air[0] else "high")
        assert int(air.long().diff().abs().sum()) == 1, "one contiguous stretch of air"
    assert ends == {"low", "high"}
    plain = PatchAugmenter(((-200.0, 300.0),), seed=11)(hu, label)
    off = PatchAugmenter(((-200.0, 300.0),), seed=11, scan_range_prob=0.0)(hu, label)
    assert torch.equal(plain[0], off[0]) and torch.equal(plain[1], off[1]), "off by default, the same draws as before"


def test_one_window_is_the_old_scaling_and_several_are_channels() -> None:
    hu = torch.linspace(-1200, 1800, 3000).reshape(1, 10, 15, 20)
    old = ScaleIntensityRange(a_min=-200.0, a_max=300.0, b_min=0.0, b_max=1.0, clip=True)(hu)
    assert torch.equal(torch.as_tensor(HUWindows((-200.0, 300.0))(hu)), torch.as_tensor(old))
    config = ModelConfig(extra_windows=MULTI_WINDOWS)
    multi = HUWindows(config.input_windows)(hu)
    assert multi.shape == (3, 10, 15, 20) and torch.equal(multi[:1], torch.as_tensor(old))
    bone, soft = hu[0] > 700, (hu[0] > 100) & (hu[0] < 250)
    assert float(multi[0][bone].min()) == 1.0 and float(multi[0][soft].max()) > 0.6, "one window merges them"
    assert float(multi[2][bone].min()) > float(multi[2][soft].max()), "bone stays distinguishable from soft tissue"
    air, fat = hu[0] < -900, (hu[0] > -150) & (hu[0] < -100)
    assert float(multi[1][air].max()) < float(multi[1][fat].min()), "air stays distinguishable from fat"
    assert ModelConfig.from_json(config.to_json()) == config and config.in_channels == 3


def test_multi_window_training_input(train_phantom_dir: Path) -> None:
    cases = load_folder(train_phantom_dir)
    single = prepare_cases(cases, tiny_config())[0]
    multi = prepare_cases(cases, tiny_config(extra_windows=MULTI_WINDOWS))[0]
    assert single.image.shape[0] == 1 and multi.image.shape[0] == 3
    assert torch.equal(multi.image[:1], single.image), "the first channel is the one-window input"
    config = tiny_config(extra_windows=MULTI_WINDOWS)
    for augment in (None, PatchAugmenter(config.input_windows, seed=0)):
        sampler = PromptedPatchSampler([multi], PromptVocabulary.load(None), config.roi_size, 2, seed=1,
                                       foreground_fraction=0.5, augment=augment)
        image, prompts, targets = sampler.sample()
        assert image.shape == (1, 3, *config.roi_size) and targets.shape == (2, 1, *config.roi_size)
        features, _ = TextDiffSeg(config).image_encoder(image)
        assert features.shape[1] == config.fused_channels


def test_sampler_weights_and_foreground(train_phantom_dir: Path) -> None:
    cases = prepare_cases(load_folder(train_phantom_dir), tiny_config())
    vocab = PromptVocabulary.load(None)
    roi = tiny_config().roi_size
    twin = [cases[0], type(cases[0])("other", cases[0].image, cases[0].label, cases[0].targets, cases[0].present)]
    weighted = PromptedPatchSampler(twin, vocab, roi, 1, seed=0, case_weights=[0.0, 1.0])
    assert all(weighted.rng.choices(range(2), weights=weighted.case_weights)[0] == 1 for _ in range(20))
    focused = PromptedPatchSampler(cases, vocab, roi, 3, negative_fraction=0.0, seed=0, foreground_fraction=1.0)
    for _ in range(10):
        _, _, targets = focused.sample()
        assert targets[0].sum() > 0, "a foreground patch contains its first prompt's structure"
    # the defaults draw exactly what the sampler drew before the options existed (same stream as choice(cases))
    a = PromptedPatchSampler(cases, vocab, roi, 2, seed=5)
    b = PromptedPatchSampler(cases, vocab, roi, 2, seed=5, case_weights=None, foreground_fraction=0.0)
    for _ in range(3):
        x, y = a.sample(), b.sample()
        assert torch.equal(x[0], y[0]) and x[1] == y[1]
    with pytest.raises(ValueError, match="case weights"):
        PromptedPatchSampler(cases, vocab, roi, case_weights=[1.0, 2.0])


def test_checkpoints_without_windows_load_as_one_channel_and_widen_without_changing_features(tmp_path: Path) -> None:
    model = TextDiffSeg(tiny_config()).eval()
    save_checkpoint(tmp_path / "new.pt", model)
    payload = torch.load(tmp_path / "new.pt", weights_only=True)
    raw = json.loads(payload["config"])
    del raw["extra_windows"]  # what every checkpoint written before the field looks like
    payload["config"] = json.dumps(raw)
    torch.save(payload, tmp_path / "old.pt")
    old, _ = load_checkpoint(tmp_path / "old.pt")
    assert old.config.extra_windows == () and old.config.in_channels == 1
    assert old.config.input_windows == ((-200.0, 300.0),)
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), model.state_dict().values()))
    wide = widen_input(old, MULTI_WINDOWS).eval()
    assert wide.config.in_channels == 3
    roi = old.config.roi_size
    x = torch.rand(1, 1, *roi, generator=torch.Generator().manual_seed(0))
    extra = torch.rand(1, 2, *roi, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, skips_a = old.image_encoder(x)
        b, skips_b = wide.image_encoder(torch.cat([x, extra], 1))
    assert torch.equal(a, b) and all(torch.equal(p, q) for p, q in zip(skips_a, skips_b))
    if SHIPPED.is_file():  # the shipped checkpoint loads whichever input it has
        config = read_config(SHIPPED)
        assert config.in_channels == len(config.input_windows) == load_checkpoint(SHIPPED)[0].config.in_channels


def test_tiny_run_with_augmentation_and_mixed_sources_learns(tmp_path: Path, train_phantom_dir: Path,
                                                            tiny_encoder) -> None:
    out = tmp_path / "run"
    # one structure: the random tiny BERT cannot tell prompts apart, the image pathway must learn where the liver is
    opts = TrainOptions(data=(train_phantom_dir, train_phantom_dir), out=out, steps=50, preset="tiny", lr=5e-3,
                        prompts_per_volume=2, negative_fraction=0.0, progress=False, seed=0, windows="multi",
                        augment=True, foreground_fraction=0.5, data_weights=(1.0, 2.0), structures=("liver",))
    run_training(opts, encoder=tiny_encoder)
    losses = [json.loads(line)["seg"] for line in (out / "history.jsonl").read_text().splitlines()]
    assert len(losses) == 50
    assert np.mean(losses[-15:]) < 0.8 * np.mean(losses[:15]), "the segmentation loss goes down"
    model, _ = load_checkpoint(out / "model.pt", tiny_encoder)
    assert model.config.extra_windows == MULTI_WINDOWS


def test_new_flags_round_trip_and_exclude(tmp_path: Path, train_phantom_dir: Path) -> None:
    from textdiffseg.launch import options_to_argv
    from textdiffseg.train_loop import load_sources

    opts = TrainOptions(data=(Path("/a"), Path("/b.json")), out=Path("/o"), data_weights=(2.0, 1.0),
                        exclude_cases=("ts_abdomen",), windows="multi", augment=True, foreground_fraction=0.33)
    assert train.parse_args(options_to_argv(opts)) == opts
    cases = load_folder(train_phantom_dir)
    mixed = TrainOptions(data=(train_phantom_dir, train_phantom_dir), out=tmp_path, data_weights=(3.0, 1.0))
    found, weights = load_sources(mixed)
    assert len(found) == 2 * len(cases) and weights == [3.0 / len(cases)] * len(cases) + [1.0 / len(cases)] * len(
        cases)
    with pytest.raises(ValueError, match="no training cases"):
        load_sources(TrainOptions(data=train_phantom_dir, out=tmp_path, exclude_cases=(cases[0].case_id,)))


def test_wide_phantoms_keep_the_default_series() -> None:
    cfg = PhantomConfig(spacing=(8.0, 8.0, 8.0))
    default = generate_case(0, 1, cfg)
    again = generate_case(0, 1, PhantomConfig(spacing=(8.0, 8.0, 8.0), randomise="default"))
    wide = generate_case(0, 1, PhantomConfig(spacing=(8.0, 8.0, 8.0), randomise="wide"))
    assert np.array_equal(default.image, again.image)
    assert np.array_equal(wide.label, default.label), "same anatomy, other look"
    assert not np.array_equal(wide.image, default.image)
    repeat = generate_case(0, 1, PhantomConfig(spacing=(8.0, 8.0, 8.0), randomise="wide"))
    assert np.array_equal(wide.image, repeat.image), "deterministic"

