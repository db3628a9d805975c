"""Joint segmentation + denoising loss, each term reported separately."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss

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


class JointLoss:
    """``seg(decode(x0_hat), y) + recon_weight * seg(decode(z0), y) + lambda * MSE(output, target)``.

    ``seg`` is MONAI's Dice + BCE on the decoded mask, per sample, plus :func:`absent_penalty` for the prompts whose
    structure is absent from the patch ("liver tumor" on a tumour-free liver must give an empty mask).
    The reconstruction term keeps the label latent informative (without it the encoder could collapse to a constant
    that is trivial to denoise); LDSeg decodes its noisy estimate instead, which is our ``seg`` term.
    """

    def __init__(self, denoise_weight: float = 1.0, recon_weight: float = 0.5, absent_weight: float = 1.0) -> None:
        self.dice_ce = DiceCELoss(sigmoid=True, smooth_nr=1.0, smooth_dr=1.0, batch=False)
        self.denoise_weight = denoise_weight
        self.recon_weight = recon_weight
        self.absent_weight = absent_weight

    def seg(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Segmentation loss of decoded mask logits against binary targets (B, 1, D, H, W)."""
        return self.dice_ce(logits, target) + self.absent_weight * absent_penalty(logits, target)

    def __call__(
        self,
        logits: torch.Tensor,
        recon_logits: torch.Tensor,
        target: torch.Tensor,
        denoiser_output: torch.Tensor,
        denoiser_target: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Return ``{"loss", "seg", "recon", "denoise"}``; only ``loss`` is meant for backward.

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
        return {"loss": total, "seg": seg.detach(), "recon": recon.detach(), "denoise": denoise.detach()}
