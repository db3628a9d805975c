"""TextDiffSeg: the modules wired together. Diffusion sampling lives in ``textdiffseg.diffusion``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from monai.networks.schedulers import Scheduler
from torch import nn

from textdiffseg.config import ModelConfig
from textdiffseg.diffusion.schedule import x0_from_output
from textdiffseg.networks.click_encoder import ClickDecoderBias, ClickEncoder
from textdiffseg.networks.cross_attention import CrossModalAttention3D, PooledTextBias, masked_token_mean
from textdiffseg.networks.denoiser import ConditionalDenoiser
from textdiffseg.networks.fused_head import FusedPresenceHead
from textdiffseg.networks.image_encoder import ImageEncoder, PooledImageEncoder
from textdiffseg.networks.label_autoencoder import LabelDecoder, LabelEncoder, PooledLabelEncoder
from textdiffseg.networks.learned_prompts import LearnedPrompts
from textdiffseg.networks.prompt_film import PromptFiLM


@dataclass
class TrainingOutputs:
    """Everything the joint loss needs from one training pass."""

    denoiser_output: torch.Tensor  # what the denoiser predicted (x0, noise or v)
    latent: torch.Tensor  # z_l(0), the clean label latent
    logits: torch.Tensor  # mask logits decoded from the denoiser's x0 estimate
    recon_logits: torch.Tensor  # mask logits decoded from z_l(0) itself
    cell_logits: torch.Tensor | None = None  # per latent cell presence logits (models with a fused head), else None


@dataclass
class Condition:
    """What sampling needs per prompt, computed once per volume/window: fused features and image skips."""

    fused: torch.Tensor  # (P, c, d, h, w)
    skips: list[torch.Tensor]  # image skips, batch 1 (shared by all prompts) or P
    image_size: tuple[int, ...]  # (D, H, W) the masks are decoded to
    clicks: torch.Tensor | None = None  # (P, 2, D, H, W) click maps (models with a click branch), None: text only
    prior: torch.Tensor | None = None  # (P, 1, D, H, W) coarse probability (fine stages), None: whole-CT model
    text: torch.Tensor | None = None  # (P, text_dim) pooled prompt text (models with prompt FiLM), else None


class TextDiffSeg(nn.Module):
    """Image encoder + text projection + cross-modal attention + label autoencoder + conditional denoiser.

    Args:
        config: architecture; the three ``use_*`` switches select the paper's ablations.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        f = config.downsample
        if config.use_image_encoder:
            self.image_encoder: nn.Module = ImageEncoder(
                config.image_channels, config.fused_channels, config.in_channels
            )
            skip_channels = tuple(config.image_channels[:-1])  # finest first
        else:
            self.image_encoder = PooledImageEncoder(f, config.fused_channels, config.in_channels)
            skip_channels = ()
        self.text_projection = nn.Sequential(
            nn.Linear(config.text_hidden_size, config.text_dim), nn.LayerNorm(config.text_dim)
        )
        if config.use_text_fusion:
            self.fusion: nn.Module = CrossModalAttention3D(
                config.fused_channels, config.text_dim, config.attention_heads
            )
        else:
            self.fusion = PooledTextBias(config.fused_channels, config.text_dim)
        if config.use_label_encoder:
            self.label_encoder: nn.Module = LabelEncoder(config.image_channels, config.latent_channels)
            latent_channels = config.latent_channels
        else:
            self.label_encoder = PooledLabelEncoder(f)
            latent_channels = 1
        self.latent_channels = latent_channels
        self.label_decoder = LabelDecoder(latent_channels, skip_channels, f)
        self.denoiser = ConditionalDenoiser(latent_channels, config.fused_channels, config.denoiser_channels)
        if config.click_channels:  # absent otherwise: older checkpoints keep exactly their state-dict keys
            self.click_encoder = ClickEncoder(config.click_channels, config.fused_channels, len(config.image_channels))
            self.click_decoder = ClickDecoderBias(config.click_channels, self.label_decoder.level_widths)
        if config.prior_channels:  # the fine stage: the coarse result enters the way clicks do
            self.prior_encoder = ClickEncoder(config.prior_channels, config.fused_channels, len(config.image_channels))
            self.prior_decoder = ClickDecoderBias(config.prior_channels, self.label_decoder.level_widths)
        if config.prompt_film:  # absent otherwise, as the click branch
            self.prompt_film = PromptFiLM(config.text_dim, self.label_decoder.level_widths)
        if config.fused_seg_weight:  # absent otherwise, as the click branch (training only: sampling never calls it)
            self.fused_head = FusedPresenceHead(config.fused_channels)
        if config.learned_prompts:  # absent otherwise, as the click branch
            self.learned_prompts = LearnedPrompts(
                config.learned_prompts, config.learned_prompt_length, config.text_hidden_size, config.fused_channels
            )

    @property
    def takes_clicks(self) -> bool:
        """Whether the model has a click branch (``config.click_channels > 0``)."""
        return bool(self.config.click_channels)

    @property
    def takes_prior(self) -> bool:
        """Whether the model is a zoom-in fine stage (``config.prior_channels > 0``)."""
        return bool(self.config.prior_channels)

    def condition(
        self,
        image: torch.Tensor,
        tokens: torch.Tensor,
        token_mask: torch.Tensor,
        clicks: torch.Tensor | None = None,
        prior: torch.Tensor | None = None,
        structures: Sequence[str | None] | None = None,
    ) -> Condition:
        """Encode the image once and fuse every prompt into it.

        Args:
            image: (1, C, D, H, W) one window shared by all prompts, or (P, C, D, H, W) one per prompt.
            tokens: (P, L, hidden) text-encoder token embeddings.
            token_mask: (P, L) True for real tokens.
            clicks: (P, 2, D, H, W) positive/negative click maps (``textdiffseg.clicks.click_maps``), or ``None``
                (text alone; an all-zero map is the same).
            prior: (P, 1, D, H, W) the coarse pass's probability of each prompt (fine stages only; required there).
            structures: the structure each prompt is understood as (``None`` where it is none): a prompt of a learned
                structure (``config.learned_prompts``) gets its learned tokens and adapter
                (``textdiffseg.networks.learned_prompts``). ``None``: the text encoder's tokens for every prompt.
        """
        learned = self.learned_prompts if self.config.learned_prompts and structures is not None else None
        if learned is not None:
            tokens, token_mask = learned.substitute(tokens, token_mask, structures)  # type: ignore[arg-type]
        z_image, skips = self.image_encoder(image)
        projected = self.text_projection(tokens)
        fused = self.fusion(z_image, projected, token_mask)
        text = masked_token_mean(projected, token_mask) if self.config.prompt_film else None
        if learned is not None:
            fused = learned.adapt(fused, structures)  # type: ignore[arg-type]
        if clicks is not None:
            if not self.takes_clicks:
                raise ValueError("this model has no click branch (config.click_channels is 0)")
            clicks = clicks.to(fused.dtype)
            fused = fused + self.click_encoder(clicks)
        if self.takes_prior != (prior is not None):
            raise ValueError("a fine stage needs the coarse prior, and only a fine stage takes one")
        if prior is not None:
            prior = prior.to(fused.dtype)
            fused = fused + self.prior_encoder(prior)
        return Condition(
            fused=fused, skips=skips, image_size=tuple(image.shape[2:]), clicks=clicks, prior=prior, text=text
        )

    def encode_label(self, mask: torch.Tensor) -> torch.Tensor:
        """Binary mask (B, 1, D, H, W) -> label latent z_l(0)."""
        return self.label_encoder(mask)

    def decode_label(self, latent: torch.Tensor, condition: Condition) -> torch.Tensor:
        """Label latent -> mask logits at the image resolution (the condition's clicks and prior, if any, added per
        level; its prompt text modulating each level in models with prompt FiLM)."""

        def per_latent(values: torch.Tensor) -> torch.Tensor:  # an ensemble of samples per prompt repeats its values
            return (
                values
                if values.shape[0] == latent.shape[0]
                else values.repeat_interleave(latent.shape[0] // values.shape[0], 0)
            )

        level_film = None
        if condition.text is not None:
            text = per_latent(condition.text)

            def level_film(level: int, features: torch.Tensor) -> torch.Tensor:
                return self.prompt_film(text, level, features)

        branches = [
            (per_latent(maps), decoder)
            for maps, decoder in ((condition.clicks, "click_decoder"), (condition.prior, "prior_decoder"))
            if maps is not None
        ]
        if not branches:
            return self.label_decoder(latent, condition.skips, condition.image_size, level_film=level_film)

        def level_bias(level: int, size: tuple[int, ...]) -> torch.Tensor:
            return sum(getattr(self, decoder)(maps, level, size) for maps, decoder in branches)  # type: ignore[return-value]

        return self.label_decoder(latent, condition.skips, condition.image_size, level_bias, level_film)

    def denoise(self, noisy_latent: torch.Tensor, timesteps: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
        """One denoiser evaluation (prediction type per ``config.prediction_type``)."""
        return self.denoiser(noisy_latent, timesteps, fused)

    def forward(
        self,
        image: torch.Tensor,
        tokens: torch.Tensor,
        token_mask: torch.Tensor,
        targets: torch.Tensor,
        noise: torch.Tensor,
        timesteps: torch.Tensor,
        scheduler: Scheduler,
        clicks: torch.Tensor | None = None,
        prior: torch.Tensor | None = None,
        structures: Sequence[str | None] | None = None,
    ) -> TrainingOutputs:
        """One end-to-end training pass (what DDP wraps): encode, noise (eq. 3), denoise, decode.

        Args:
            image: (1 or P, 1, D, H, W) normalised patch(es).
            tokens, token_mask: text-encoder output for the P prompts.
            targets: (P, 1, D, H, W) binary masks of the prompted structures.
            noise: Gaussian noise shaped like the label latent.
            timesteps: (P,) diffusion steps.
            scheduler: MONAI scheduler that defines q(z_t | z_0).
            clicks: (P, 2, D, H, W) click maps (models with a click branch), or ``None``.
            prior: (P, 1, D, H, W) simulated coarse probabilities (fine stages), or ``None``.
            structures: what each prompt is understood as (see :meth:`condition`).
        """
        condition = self.condition(image, tokens, token_mask, clicks, prior, structures)
        z0 = self.encode_label(targets)
        noisy = scheduler.add_noise(z0, noise, timesteps)
        output = self.denoise(noisy, timesteps, condition.fused)
        x0_hat = x0_from_output(scheduler, output, noisy, timesteps).clamp(-1, 1)
        return TrainingOutputs(
            denoiser_output=output,
            latent=z0,
            logits=self.decode_label(x0_hat, condition),
            recon_logits=self.decode_label(z0, condition),
            cell_logits=self.fused_head(condition.fused) if self.config.fused_seg_weight else None,
        )
