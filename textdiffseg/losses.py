"""Joint segmentation + denoising loss, each term reported separately."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss


class JointLoss:
    """``seg(decode(x0_hat), y) + recon_weight * seg(decode(z0), y) + lambda * MSE(output, target)``.

    ``seg`` is MONAI's Dice + BCE on the decoded mask (per sample, so empty targets of negative prompts count).
    The reconstruction term keeps the label latent informative (without it the encoder could collapse to a constant
    that is trivial to denoise); LDSeg decodes its noisy estimate instead, which is our ``seg`` term.
    """

    def __init__(self, denoise_weight: float = 1.0, recon_weight: float = 0.5) -> None:
        self.seg = DiceCELoss(sigmoid=True, smooth_nr=1.0, smooth_dr=1.0, batch=False)
        self.denoise_weight = denoise_weight
        self.recon_weight = recon_weight

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
