"""Model configuration: every architectural choice in one typed, serialisable place.

The paper (arXiv 2504.11825) fixes the module list and equations 1-3 but not sizes, schedules or loss weights; the
defaults below are our choices, modelled on LDSeg (the template whose notation TextDiffSeg shares) and scaled for CPU.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields


@dataclass
class ModelConfig:
    """Architecture and diffusion settings of a TextDiffSeg model.

    Args:
        spacing: voxel size (mm) the model works at; inputs are resampled to it and back.
        roi_size: sliding-window patch size at ``spacing`` (each side divisible by ``2 * 2 ** len(image_channels)``).
        hu_window: HU range mapped to [0, 1] (values outside are clipped): the first input channel.
        extra_windows: further HU windows, one input channel each (e.g. wide ``(-1000, 1000)`` and bone
            ``(300, 1500)``), so that bone, contrast and air stay distinguishable from soft tissue; empty (the
            default, and every checkpoint written before this field) = one channel, as before.
        image_channels: channels of the image encoder stages; each stage halves the resolution.
        latent_channels: channels ``k`` of the label latent (LDSeg uses 1; we use a few for sharper masks).
        fused_channels: channels ``c`` of the image latent ``z_i`` that text is fused into.
        text_dim: width text tokens are projected to before cross-attention.
        attention_heads: heads of the 3D cross-modal attention (eq. 2).
        denoiser_channels: channels of the MONAI ``DiffusionModelUNet`` levels (self-attention on the last one).
        num_train_timesteps: diffusion length T.
        noise_schedule: a MONAI noise schedule name (``linear_beta``, ``scaled_linear_beta``, ``cosine``...).
        sampling_steps: DDIM steps at inference.
        timestep_spacing: where the inference steps sit on the training timesteps (the names diffusers uses):
            ``leading`` (the default, and every checkpoint written before this field; MONAI's DDIM spacing) starts
            at ``T - T / steps`` and ends at 0, so one step asks the denoiser to clean pure noise as if it were
            a clean latent (t = 0); ``trailing`` starts at ``T - 1`` (just under it when ``steps`` does not divide
            ``T``), where pure noise is what training showed it, and ends at ``T / steps - 1``.
        prediction_type: what the denoiser predicts; ``sample`` (x0) lets the few-step sampler and the seg loss
            act on the same quantity (Diff-UNet does the same).
        denoise_weight: lambda of the joint loss ``seg + lambda * MSE``.
        absent_weight: weight of the absent-structure term of the segmentation loss
            (``textdiffseg.losses.absent_penalty``); 0 leaves absent prompts to Dice + BCE alone.
        use_text_fusion: ablation switch; False replaces token cross-attention with a pooled-text channel bias.
        use_image_encoder: ablation switch; False replaces the learned encoder by pooled intensities (no skips).
        use_label_encoder: ablation switch; False denoises the pooled mask itself (1 channel) instead of a
            learned latent.
        text_encoder: the text encoder's name as given (recorded; see ``text_fingerprint``).
        text_hidden_size: the text encoder's hidden size.
        text_fingerprint: digest of the text encoder's token embeddings; a checkpoint refuses any other encoder.
        click_channels: 0 (the default, and every checkpoint written before this field) = no click branch; 2 = a
            small encoder turns per-prompt positive/negative click maps into features added to the fused features
            (``textdiffseg.networks.click_encoder``, ``textdiffseg.clicks``).
        prior_channels: 0 (the default: a whole-CT model) or 1: the fine stage of zoom-in inference
            (``textdiffseg.zoom_in``), which also takes the coarse pass's probability map of its prompt through a
            branch like the click branch.
        learned_prompts: structures answered by trained token embeddings instead of the text encoder's tokens
            (``textdiffseg.networks.learned_prompts``): those a site taught a frozen model with ``--tune prompts``.
            Empty (the default, and every checkpoint written before this field) = none.
        learned_prompt_length: tokens per learned prompt.
        prompt_film: False (the default, and every checkpoint written before this field): the label decoder sees the
            prompt only through the label latent; True: each prompt's pooled text also scales and shifts the
            channels of every decoder level (``textdiffseg.networks.prompt_film``), so a prompt picks the fine image
            features its mask is drawn from.
        fused_seg_weight: 0 (the default, and every checkpoint written before this field): the fused features are
            supervised only through the denoiser; > 0: a 1x1x1 head on them predicts, per latent cell, whether the
            prompted structure lies in it (the target max-pooled to the latent grid), and its BCE (the structure's
            cells weighed as much as the rest) joins the joint loss with this weight (deep supervision,
            ``textdiffseg.networks.fused_head``), so that the fused features must say where a small structure is.
        bce_foreground_floor: 0 (the default, and every checkpoint written before this field): the mask's BCE is the
            mean over the patch; > 0: over the foreground and the background apart, the foreground weighted by its
            share of the patch raised to this floor (``textdiffseg.losses.floored_bce``; 0.5 weighs both alike), so
            the few voxels of a small structure keep pulling once the logits have saturated to "nowhere".
        bce_floor_below: 1 (the default): the floor weighs every foreground voxel; < 1: only those whose probability
            is under this value (missed by far), the rest keeping the plain BCE's weight, so the floor pulls a missed
            small structure without making every mask grow.
    """

    spacing: tuple[float, float, float] = (4.0, 4.0, 4.0)
    roi_size: tuple[int, int, int] = (96, 96, 80)
    hu_window: tuple[float, float] = (-200.0, 300.0)
    extra_windows: tuple[tuple[float, float], ...] = ()
    image_channels: tuple[int, ...] = (16, 32)
    latent_channels: int = 4
    fused_channels: int = 48
    text_dim: int = 64
    attention_heads: int = 4
    denoiser_channels: tuple[int, int] = (48, 64)
    num_train_timesteps: int = 1000
    noise_schedule: str = "scaled_linear_beta"
    sampling_steps: int = 5
    timestep_spacing: str = "leading"
    prediction_type: str = "sample"
    denoise_weight: float = 1.0
    absent_weight: float = 1.0
    use_text_fusion: bool = True
    use_image_encoder: bool = True
    use_label_encoder: bool = True
    text_encoder: str = "default"
    text_hidden_size: int = 384
    text_fingerprint: str = ""
    click_channels: int = 0
    prior_channels: int = 0
    learned_prompts: tuple[str, ...] = ()
    learned_prompt_length: int = 8
    prompt_film: bool = False
    fused_seg_weight: float = 0.0
    bce_foreground_floor: float = 0.0
    bce_floor_below: float = 1.0
    extra: dict = field(default_factory=dict)

    @property
    def input_windows(self) -> tuple[tuple[float, float], ...]:
        """Every HU window of the input, one channel each (``hu_window`` first)."""
        return (tuple(self.hu_window), *(tuple(w) for w in self.extra_windows))  # type: ignore[return-value]

    @property
    def in_channels(self) -> int:
        """Image input channels (one per HU window)."""
        return 1 + len(self.extra_windows)

    @property
    def downsample(self) -> int:
        """Total downsampling factor of the image and label encoders."""
        return 2 ** len(self.image_channels)

    def to_json(self) -> str:
        """JSON text of the config (how checkpoints store it, so they load with ``weights_only=True``)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        """Inverse of :meth:`to_json`; unknown keys are refused so a newer checkpoint fails loudly."""
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"checkpoint config has unknown fields {sorted(unknown)}; upgrade textdiffseg")
        for key in ("spacing", "roi_size", "hu_window", "image_channels", "denoiser_channels", "learned_prompts"):
            if key in raw:
                raw[key] = tuple(raw[key])
        if "extra_windows" in raw:
            raw["extra_windows"] = tuple(tuple(float(v) for v in w) for w in raw["extra_windows"])
        return cls(**raw)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent setting."""
        step = self.downsample * 2
        if any(r % step for r in self.roi_size):
            raise ValueError(f"roi_size {self.roi_size} must be divisible by {step}")
        if self.prediction_type not in ("sample", "epsilon", "v_prediction"):
            raise ValueError(f"prediction_type must be sample, epsilon or v_prediction, not {self.prediction_type!r}")
        if self.sampling_steps < 1:
            raise ValueError("sampling_steps must be >= 1")
        if self.timestep_spacing not in TIMESTEP_SPACINGS:
            raise ValueError(f"timestep_spacing must be one of {TIMESTEP_SPACINGS}, not {self.timestep_spacing!r}")
        if any(len(w) != 2 or not w[0] < w[1] for w in self.input_windows):
            raise ValueError(f"HU windows must be (low, high) with low < high, got {self.input_windows}")
        if any(s <= 0 for s in self.spacing):
            raise ValueError(f"spacing must be positive, got {self.spacing}")
        if self.click_channels not in (0, 2):
            raise ValueError(f"click_channels must be 0 (no clicks) or 2 (+/-), not {self.click_channels}")
        if self.prior_channels not in (0, 1):
            raise ValueError(f"prior_channels must be 0 (whole CT) or 1 (fine stage), not {self.prior_channels}")
        if not 0.0 < self.bce_floor_below <= 1.0:
            raise ValueError(f"bce_floor_below must be in (0, 1], not {self.bce_floor_below}")
        if not 0.0 <= self.bce_foreground_floor <= 1.0:
            raise ValueError(f"bce_foreground_floor must be between 0 and 1, not {self.bce_foreground_floor}")
        if self.fused_seg_weight < 0:
            raise ValueError(f"fused_seg_weight must be >= 0, not {self.fused_seg_weight}")


TIMESTEP_SPACINGS = ("leading", "trailing")

PRESETS: dict[str, dict[str, object]] = {
    # CPU unit tests: seconds per training run on 2 cores.
    "tiny": dict(
        spacing=(6.0, 6.0, 6.0),
        roi_size=(48, 48, 40),
        image_channels=(12, 24),
        latent_channels=2,
        fused_channels=24,
        text_dim=32,
        attention_heads=2,
        denoiser_channels=(24, 32),
        sampling_steps=3,
    ),
    # The demo checkpoint: trains on phantoms in minutes on a 2-core CPU and stays far under 30 MB.
    "small": dict(
        spacing=(5.0, 5.0, 5.0),
        roi_size=(64, 64, 48),
        image_channels=(16, 24),
        latent_channels=4,
        fused_channels=24,
        text_dim=48,
        attention_heads=4,
        denoiser_channels=(24, 32),
        sampling_steps=5,
    ),
    "default": {},
}
# The small grid with the default preset's widths: 3.6x the parameters, 1.3-1.5x the whole-CT time of ``small`` on 2
# CPU cores (``benchmarks/latency.py --previous-ckpt``), and what ships since ``small`` could not tell 23 structures
# apart (README "The shipped model").
PRESETS["medium"] = dict(
    PRESETS["small"], image_channels=(16, 32), fused_channels=48, text_dim=64, denoiser_channels=(48, 64)
)
# Wider still: 7.5x the parameters of ``small`` (19.8 MB of weights).
PRESETS["wide"] = dict(
    PRESETS["small"], image_channels=(24, 48), fused_channels=64, text_dim=64, denoiser_channels=(64, 96)
)

# The fine stage of zoom-in inference (``textdiffseg.zoom_in``): the ``small`` network at 1.5 mm in-plane and 2.5 mm
# between slices over the region the coarse pass found (a 96 x 96 x 100 mm window), given the coarse probability.
FINE_STAGE: dict[str, object] = dict(spacing=(1.5, 1.5, 2.5), roi_size=(64, 64, 40), prior_channels=1)

# Input windows of the multi-window models (``--windows multi``): soft tissue first (the original window, so a
# one-channel checkpoint can be widened without changing what it computes), then wide (air / lung / fat vs soft
# tissue) and bone (bone and dense contrast vs soft tissue).
MULTI_WINDOWS: tuple[tuple[float, float], ...] = ((-1000.0, 1000.0), (300.0, 1500.0))


def preset_config(name: str, **overrides: object) -> ModelConfig:
    """A named configuration (``tiny``, ``small``, ``default``) with optional field overrides."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose from {sorted(PRESETS)}")
    return ModelConfig(**{**PRESETS[name], **overrides})  # type: ignore[arg-type]


def tiny_config(**overrides: object) -> ModelConfig:
    """A very small configuration for CPU tests (seconds per training run)."""
    return preset_config("tiny", **overrides)
