"""Small targets (issue 13): deep supervision of the fused features (``ModelConfig.fused_seg_weight``) and a floor
on a small structure's weight in the mask's BCE (``ModelConfig.bce_foreground_floor``, ``bce_floor_below``). Off,
both compute what every model trained with until now; on, the features learn where a small structure is and its
voxels keep pulling once the logits have saturated."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss

from textdiffseg.checkpoint import load_checkpoint, save_checkpoint
from textdiffseg.config import tiny_config
from textdiffseg.diffusion.schedule import make_scheduler
from textdiffseg.losses import UNKNOWN, JointLoss, absent_penalty, cell_targets, floored_bce
from textdiffseg.networks.model import TextDiffSeg
from textdiffseg.train_step import Trainer

HIDDEN = 32
ROI = (16, 16, 16)


def test_cell_targets_mark_every_cell_a_structure_touches_and_keep_unknown_cells_unknown() -> None:
    target = torch.zeros(2, 1, 8, 8, 8)
    target[0, 0, 1, 1, 1] = 1.0  # one voxel marks its whole 4^3 cell
    target[1] = UNKNOWN
    target[1, 0, :4] = 0.0  # known negative in the first half
    target[1, 0, 0, 0, 4] = 1.0  # a positive voxel makes its cell positive although others in it are unknown
    cells = cell_targets(target, 4)
    assert cells.shape == (2, 1, 2, 2, 2)
    assert cells[0].flatten().tolist() == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert cells[1].flatten().tolist() == [0.0, 1.0, 0.0, 0.0, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN]


def _training_pass(model: TextDiffSeg, p: int = 2):  # noqa: ANN202 - TrainingOutputs
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 1, *ROI, generator=generator)
    tokens, mask = torch.randn(p, 4, HIDDEN, generator=generator), torch.ones(p, 4, dtype=torch.bool)
    targets = (torch.rand(p, 1, *ROI, generator=generator) > 0.7).float()
    latent_shape = (p, model.latent_channels, *(s // model.config.downsample for s in ROI))
    noise = torch.randn(latent_shape, generator=generator)
    steps = torch.tensor([10, 900])[:p]
    return model(image, tokens, mask, targets, noise, steps, make_scheduler(model.config)), targets


def test_without_the_weight_the_model_has_no_head_and_the_loss_no_cell_term() -> None:
    torch.manual_seed(0)
    plain = TextDiffSeg(tiny_config(text_hidden_size=HIDDEN))
    assert not hasattr(plain, "fused_head") and not any(k.startswith("fused_head") for k in plain.state_dict())
    out, targets = _training_pass(plain)
    assert out.cell_logits is None
    terms = JointLoss()(out.logits, out.recon_logits, targets, out.denoiser_output, out.latent)
    assert set(terms) == {"loss", "seg", "recon", "denoise"}


def test_the_head_only_adds_a_loss_term_and_survives_checkpoints(tmp_path) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    plain = TextDiffSeg(tiny_config(text_hidden_size=HIDDEN))
    headed = TextDiffSeg(tiny_config(text_hidden_size=HIDDEN, fused_seg_weight=0.5))
    missing, unexpected = headed.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("fused_head.") for k in missing)
    (before, targets), (after, _) = _training_pass(plain), _training_pass(headed)
    torch.testing.assert_close(after.logits, before.logits)  # the head reads the features, it changes no mask
    assert after.cell_logits is not None and after.cell_logits.shape == (2, 1, 4, 4, 4)
    loss = JointLoss(cell_weight=0.5)
    with_cells = loss(after.logits, after.recon_logits, targets, after.denoiser_output, after.latent, after.cell_logits)
    without = JointLoss()(before.logits, before.recon_logits, targets, before.denoiser_output, before.latent)
    torch.testing.assert_close(with_cells["loss"], without["loss"] + 0.5 * with_cells["cell"])
    save_checkpoint(tmp_path / "headed.pt", headed)
    loaded, _ = load_checkpoint(tmp_path / "headed.pt")
    assert loaded.config.fused_seg_weight == 0.5
    torch.testing.assert_close(loaded.fused_head.conv.weight, headed.fused_head.conv.weight)


def test_a_negative_weight_is_refused() -> None:
    with pytest.raises(ValueError, match="fused_seg_weight"):
        TextDiffSeg(tiny_config(text_hidden_size=HIDDEN, fused_seg_weight=-1.0))


def test_the_fused_features_learn_where_a_small_bright_structure_is(tiny_encoder) -> None:  # noqa: ANN001
    """A bright 4^3 cube at a random place in noise: the head must come to mark its cells and no others."""
    torch.manual_seed(0)
    config = tiny_config(
        text_encoder=tiny_encoder.name, text_hidden_size=tiny_encoder.hidden_size, fused_seg_weight=1.0, roi_size=ROI
    )
    model = TextDiffSeg(config)
    trainer = Trainer(model, tiny_encoder, lr=5e-3, seed=0)
    rng = random.Random(0)

    def cube_patch() -> tuple[torch.Tensor, torch.Tensor]:
        image = 0.3 * torch.rand(1, 1, *ROI, generator=torch.Generator().manual_seed(rng.randrange(2**31)))
        lo = [rng.randint(0, s - 4) for s in ROI]
        target = torch.zeros(1, 1, *ROI)
        target[0, 0, lo[0] : lo[0] + 4, lo[1] : lo[1] + 4, lo[2] : lo[2] + 4] = 1.0
        return image + 0.6 * target, target

    def cell_dice() -> float:
        scores = []
        with torch.no_grad():
            tokens, mask = tiny_encoder.encode(["liver tumor"])
            for _ in range(8):
                image, target = cube_patch()
                cells = cell_targets(target, config.downsample) > 0
                pred = model.fused_head(model.condition(image, tokens, mask).fused) > 0
                scores.append(float(2 * (pred & cells).sum() / (pred.sum() + cells.sum())))
        return sum(scores) / len(scores)

    model.eval()
    start = cell_dice()
    history = []
    for _ in range(80):
        image, target = cube_patch()
        history.append(trainer.step([(image, ["liver tumor"], target)])["cell"])
    model.eval()
    final = cell_dice()
    print({"start": start, "final": final, "cell_loss": (history[:5], history[-5:])})
    assert final > start + 0.3 and final > 0.5, (start, final)


def test_floor_zero_is_the_loss_every_model_trained_with_until_now() -> None:
    """``bce_foreground_floor`` 0 (every checkpoint's value) computes MONAI's Dice + BCE, as before the field, and
    :func:`floored_bce` at 0 is that BCE."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 1, *ROI, generator=generator)
    target = (torch.rand(3, 1, *ROI, generator=generator) > 0.8).float()
    target[2] = 0.0  # an absent structure
    before = DiceCELoss(sigmoid=True, smooth_nr=1.0, smooth_dr=1.0, batch=False)(logits, target)
    torch.testing.assert_close(JointLoss().seg(logits, target), before + absent_penalty(logits, target))
    torch.testing.assert_close(floored_bce(logits, target, 0.0), F.binary_cross_entropy_with_logits(logits, target))
    rest = JointLoss(bce_floor=1e-9).seg(logits, target) - floored_bce(logits, target, 1e-9)  # Dice + absent term
    plain_bce = F.binary_cross_entropy_with_logits(logits, target)
    torch.testing.assert_close(rest + plain_bce, JointLoss().seg(logits, target))


def test_a_floor_only_below_a_probability_leaves_voxels_above_it_to_the_plain_loss() -> None:
    target = torch.zeros(1, 1, *ROI)
    target[0, 0, 3, 3, 3:5] = 1.0
    found = torch.where(target > 0, 1.0, -5.0)  # the structure found (p 0.73), the background right (p 0.007)
    plain = F.binary_cross_entropy_with_logits(found, target)
    torch.testing.assert_close(floored_bce(found, target, 0.5, below=0.1), plain)
    assert floored_bce(found, target, 0.5) > plain * 10  # the floor everywhere: its voxels weigh 1,000 times more
    missed = torch.full((1, 1, *ROI), -10.0, requires_grad=True)  # missed by far: pulled with the floor's weight
    floored_bce(missed, target, 0.5, below=0.1).backward()
    torch.testing.assert_close(-missed.grad[target > 0].sum(), torch.tensor(0.5), atol=1e-3, rtol=0)
    torch.testing.assert_close(missed.grad[target == 0].sum(), torch.tensor(0.0), atol=1e-3, rtol=0)


@pytest.mark.parametrize(("floor", "least_pull"), [(0.1, 0.04), (0.5, 0.2)])
def test_a_floor_keeps_a_small_structure_pulling_once_its_logits_have_saturated(
    floor: float, least_pull: float
) -> None:
    """Logits at -10 everywhere ("nowhere"), a 2-voxel target in a 16^3 patch: with the plain loss its voxels barely
    move (the Dice gradient vanishes with the sigmoid; BCE weighs them 2 in 4,096); a floor pulls them with its
    weight."""
    target = torch.zeros(1, 1, *ROI)
    target[0, 0, 3, 3, 3:5] = 1.0
    pulls = {}
    for key in (0.0, floor):
        logits = torch.full((1, 1, *ROI), -10.0, requires_grad=True)
        JointLoss(bce_floor=key).seg(logits, target).backward()
        pulls[key] = float(-logits.grad[target > 0].sum())
    assert pulls[0.0] < 1e-3 and pulls[floor] > least_pull, pulls


def test_floored_bce_weighs_foreground_by_its_share_or_the_floor_and_skips_unknown_voxels() -> None:
    logits = torch.zeros(2, 1, 4, 4, 4, requires_grad=True)
    target = torch.zeros(2, 1, 4, 4, 4)
    target[0, 0, 0, 0, 0] = 1.0  # 1 of 64 voxels
    target[1] = UNKNOWN
    target[1, 0, 0] = 0.0  # an exclusion prompt: 16 known negative voxels
    loss = floored_bce(logits, target, 0.5)
    torch.testing.assert_close(loss, torch.log(torch.tensor(2.0)))  # every known voxel at p = 0.5
    loss.backward()
    assert logits.grad[1, 0, 1:].abs().sum() == 0  # unknown voxels get no gradient
    grad = logits.grad[0, 0].flatten()  # one positive voxel weighs as much as the 63 negatives together
    torch.testing.assert_close(grad[0], torch.tensor(-0.5 * 0.5 / 2))
    torch.testing.assert_close(grad[1:].sum(), torch.tensor(0.5 * 0.5 / 2))
    organ = torch.zeros(1, 1, 4, 4, 4)
    organ[..., :2] = 1.0  # half the patch: above any floor up to 0.5, so the plain BCE
    wide = torch.randn(1, 1, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(floored_bce(wide, organ, 0.1), F.binary_cross_entropy_with_logits(wide, organ))


def test_the_training_flag_sets_the_floor_and_bad_values_are_refused(tmp_path) -> None:  # noqa: ANN001
    from textdiffseg import train
    from textdiffseg.launch import options_to_argv
    from textdiffseg.train_loop import TrainOptions

    opts = TrainOptions(data=tmp_path, out=tmp_path / "run", bce_foreground_floor=0.1)
    assert train.parse_args(options_to_argv(opts)) == opts
    for bad in ("-0.1", "1.5"):
        with pytest.raises(SystemExit):
            train.parse_args(["--data", "d", "--out", "o", "--bce-foreground-floor", bad])
    with pytest.raises(ValueError, match="bce_foreground_floor"):
        tiny_config(bce_foreground_floor=2.0).validate()


def test_training_from_a_model_records_the_floor_in_its_checkpoint(train_phantom_dir, tiny_encoder, tmp_path) -> None:  # noqa: ANN001
    from textdiffseg.train_loop import TrainOptions, run_training

    base = TrainOptions(data=train_phantom_dir, out=tmp_path / "a", steps=1, preset="tiny", progress=False)
    run_training(base, encoder=tiny_encoder)
    floored = TrainOptions(
        data=train_phantom_dir,
        out=tmp_path / "b",
        steps=1,
        preset="tiny",
        progress=False,
        init_from=tmp_path / "a" / "model.pt",
        bce_foreground_floor=0.1,
    )
    summary = run_training(floored, encoder=tiny_encoder)
    assert load_checkpoint(tmp_path / "a" / "model.pt")[0].config.bce_foreground_floor == 0.0
    assert load_checkpoint(summary["model"])[0].config.bce_foreground_floor == 0.1
