"""Joint segmentation + denoising loss, each term reported separately."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss, DiceLoss

ABSENT_REFERENCE_FRACTION = 0.01
UNKNOWN = -1.0  # a target voxel that is not supervised (exclusion prompts)


def absent_penalty(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over samples with an empty target of ``V / (V + R)``, V the soft painted volume, R 1% of the patch.

    Written here because Dice and BCE barely punish a false blob on an absent structure: Dice of an empty target is
    ~1 whatever is painted (no gradient), and BCE spreads its gradient over every voxel of the patch. This term is
    the Dice loss of an empty target with a smoothing of R, so a painted volume costs from the first voxel on.
    Returns 0 when every target has foreground.
    """
    empty = target.flatten(1).sum(1) == 0
    if not bool(empty.any()):
        return logits.sum() * 0.0
    painted = torch.sigmoid(logits[empty]).flatten(1).sum(1)
    reference = ABSENT_REFERENCE_FRACTION * logits[0].numel()
    return (painted / (painted + reference)).sum() / target.shape[0]


def exclusion_penalty(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over prompts of ``V / (V + R) + BCE`` on the known voxels (target 0) only; unknown ones (-1) are ignored.

    An exclusion prompt asks for a structure the case does not annotate, on a patch whose voxels of other, disjoint
    structures are known not to be it ("liver" on a chest CT's labelled lungs). V is the soft volume painted there,
    R 1 % of the patch, as in :func:`absent_penalty`.
    """
    known = (target >= 0).float()
    prob = torch.sigmoid(logits)
    painted = (prob * known).flatten(1).sum(1)
    reference = ABSENT_REFERENCE_FRACTION * logits[0].numel()
    bce = F.binary_cross_entropy_with_logits(logits, target.clamp(min=0.0), weight=known, reduction="none")
    bce = bce.flatten(1).sum(1) / known.flatten(1).sum(1).clamp_min(1.0)
    return (painted / (painted + reference) + bce).mean()


def cell_targets(targets: torch.Tensor, factor: int) -> torch.Tensor:
    """Binary masks (P, 1, D, H, W) -> (P, 1, D/f, H/f, W/f): 1 where any voxel of the cell is foreground, the
    targets of the fused head (``textdiffseg.networks.fused_head``).

    ``UNKNOWN`` voxels (exclusion prompts) stay unknown in a cell that has no foreground and at least one of them.
    """
    present = F.max_pool3d(targets, factor)
    unknown = F.max_pool3d(-targets, factor) > 0  # some voxel is UNKNOWN
    return torch.where((present <= 0) & unknown, torch.full_like(present, UNKNOWN), present.clamp(min=0.0))


def floored_bce(logits: torch.Tensor, target: torch.Tensor, floor: float, below: float = 1.0) -> torch.Tensor:
    """Mean over samples of ``a * BCE_fg + (1 - a) * BCE_bg``, the BCE averaged over the foreground voxels and, apart,
    over the background ones, with ``a`` the foreground's share of the sample's known voxels raised to ``floor``
    (background alone for an empty target); ``UNKNOWN`` voxels are skipped.

    ``floor`` 0 is the plain BCE over the patch (a structure's voxels weigh their share); 0.5 weighs foreground and
    background alike. A small structure (a tumour: 0.02 % of a patch) keeps pulling with the floor's weight once its
    logits have saturated to "nowhere", where Dice has no gradient left; an organ above the floor is left as it was.

    ``below`` < 1 gives the floor's weight only to the foreground voxels the mask misses by far (probability under
    ``below``); every other voxel keeps its plain weight, ``1 / known voxels``. A floor applied everywhere makes masks
    grow (a voxel whose evidence is even is then worth painting many times over); applied only where the logits say
    "nowhere", it pulls a missed structure up to ``below`` and leaves the decision at 0.5 to the plain loss.
    """
    bce = F.binary_cross_entropy_with_logits(logits, target.clamp(min=0.0), reduction="none").flatten(1)
    flat = target.flatten(1)
    positive, negative = (flat > 0).float(), (flat == 0).float()
    pos_count, neg_count = positive.sum(1), negative.sum(1)
    share = pos_count / (pos_count + neg_count).clamp_min(1.0)
    weight = torch.where(pos_count > 0, share.clamp(min=floor), torch.zeros_like(share))
    if below >= 1.0:
        pos_mean = (bce * positive).sum(1) / pos_count.clamp_min(1.0)
        neg_mean = (bce * negative).sum(1) / neg_count.clamp_min(1.0)
        return (weight * pos_mean + (1 - weight) * neg_mean).mean()
    known = (pos_count + neg_count).clamp_min(1.0)[:, None]
    missed = positive * (torch.sigmoid(logits.detach()).flatten(1) < below).float()
    voxel_weight = (positive + negative - missed) / known + missed * (weight / pos_count.clamp_min(1.0))[:, None]
    return (bce * voxel_weight).sum(1).mean()


class JointLoss:
    """``seg(decode(x0_hat), y) + recon_weight * seg(decode(z0), y) + lambda * MSE(output, target)``.

    ``seg`` is MONAI's Dice plus :func:`floored_bce` (``bce_floor`` 0: the plain BCE; ``floor_below``: which
    foreground voxels the floor weighs) on the decoded mask, per sample, plus :func:`absent_penalty` for the prompts
    whose structure is absent from the patch ("liver tumor" on a tumour-free liver must give an empty mask).
    The reconstruction term keeps the label latent informative (without it the encoder could collapse to a constant
    that is trivial to denoise); LDSeg decodes its noisy estimate instead, which is our ``seg`` term.

    Models with a fused head (``ModelConfig.fused_seg_weight``) add ``cell_weight * floored_bce(cell_logits, cells,
    0.5)`` on the latent grid, against the targets max-pooled to it (:func:`cell_targets`), reported as ``cell``.
    """

    def __init__(
        self,
        denoise_weight: float = 1.0,
        recon_weight: float = 0.5,
        absent_weight: float = 1.0,
        cell_weight: float = 0.0,
        bce_floor: float = 0.0,
        floor_below: float = 1.0,
    ) -> None:
        self.dice_ce = DiceCELoss(sigmoid=True, smooth_nr=1.0, smooth_dr=1.0, batch=False)
        self.dice = DiceLoss(sigmoid=True, smooth_nr=1.0, smooth_dr=1.0, batch=False)
        self.bce_floor = bce_floor
        self.floor_below = floor_below
        self.denoise_weight = denoise_weight
        self.recon_weight = recon_weight
        self.absent_weight = absent_weight
        self.cell_weight = cell_weight

    def seg(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Segmentation loss of decoded mask logits against binary targets (B, 1, D, H, W)."""
        if self.bce_floor:
            plain = self.dice(logits, target) + floored_bce(logits, target, self.bce_floor, self.floor_below)
        else:  # MONAI's Dice + BCE, as every model until the floor was trained (floored_bce at 0 equals it)
            plain = self.dice_ce(logits, target)
        return plain + self.absent_weight * absent_penalty(logits, target)

    def __call__(
        self,
        logits: torch.Tensor,
        recon_logits: torch.Tensor,
        target: torch.Tensor,
        denoiser_output: torch.Tensor,
        denoiser_target: torch.Tensor,
        cell_logits: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Return ``{"loss", "seg", "recon", "denoise"}`` (and ``"cell"`` given ``cell_logits``); only ``loss`` is
        meant for backward.

        A target voxel of ``UNKNOWN`` (-1) is not supervised. A prompt whose target has unknown voxels is an
        exclusion prompt (:class:`textdiffseg.train_data.PromptedPatchSampler`): only :func:`exclusion_penalty` on
        its known (negative) voxels, no reconstruction or denoising term (its true mask, hence its latent, is unknown).
        """
        partial = (target < 0).flatten(1).any(1)
        full = ~partial
        zero = logits.sum() * 0.0
        n = target.shape[0]
        seg = zero
        recon = zero
        denoise = zero
        if bool(full.any()):
            share = float(full.sum()) / n
            seg = seg + share * self.seg(logits[full], target[full])
            recon = self.seg(recon_logits[full], target[full])
            denoise = F.mse_loss(denoiser_output[full], denoiser_target[full])
        if bool(partial.any()):
            seg = seg + float(partial.sum()) / n * exclusion_penalty(logits[partial], target[partial])
        total = seg + self.recon_weight * recon + self.denoise_weight * denoise
        terms = {"seg": seg.detach(), "recon": recon.detach(), "denoise": denoise.detach()}
        if cell_logits is not None:
            cell = self._cells(cell_logits, target)
            total = total + self.cell_weight * cell
            terms["cell"] = cell.detach()
        return {"loss": total, **terms}

    @staticmethod
    def _cells(cell_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """:func:`floored_bce` (foreground and background alike) of the per-cell presence logits against the targets
        max-pooled to the latent grid (exclusion prompts: their known cells only)."""
        return floored_bce(cell_logits, cell_targets(target, target.shape[-1] // cell_logits.shape[-1]), 0.5)
