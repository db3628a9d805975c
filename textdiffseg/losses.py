"""Joint segmentation + denoising loss, each term reported separately."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss

ABSENT_REFERENCE_FRACTION = 0.01


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


class JointLoss:
    """``seg(decode(x0_hat), y) + recon_weight * seg(decode(z0), y) + lambda * MSE(output, target)``.

    ``seg`` is MONAI's Dice + BCE on the decoded mask, per sample, plus :func:`absent_penalty` for the prompts whose
    structure is absent from the patch ("liver tumor" on a tumour-free liver must give an empty mask).
    The reconstruction term keeps the label latent informative (without it the encoder could collapse to a constant
    that is trivial to denoise); LDSeg decodes its noisy estimate instead, which is our ``seg`` term.
    """

    def __init__(self, denoise_weight: float = 1.0, recon_weight: float = 0.5) -> None:
        self.dice_ce = DiceCELoss(sigmoid=True, smooth_nr=1.0, smooth_dr=1.0, batch=False)
        self.denoise_weight = denoise_weight
        self.recon_weight = recon_weight

    def seg(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Segmentation loss of decoded mask logits against binary targets (B, 1, D, H, W)."""
        return self.dice_ce(logits, target) + absent_penalty(logits, target)

    def __call__(
        self,
        logits: torch.Tensor,
        recon_logits: torch.Tensor,
        target: torch.Tensor,
        denoiser_output: torch.Tensor,
        denoiser_target: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Return ``{"loss", "seg", "recon", "denoise"}``; only ``loss`` is meant for backward."""
        seg = self.seg(logits, target)
        recon = self.seg(recon_logits, target)
        denoise = F.mse_loss(denoiser_output, denoiser_target)
        total = seg + self.recon_weight * recon + self.denoise_weight * denoise
        return {"loss": total, "seg": seg.detach(), "recon": recon.detach(), "denoise": denoise.detach()}
