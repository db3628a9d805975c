"""Whole-CT inference: checks, resampling to the model spacing and back, sliding windows, multi-prompt label maps.

``Segmenter.predict`` takes a CT as a MONAI ``MetaTensor`` (channel first, HU, any orientation/spacing) and returns
per-prompt probabilities, uncertainty and a label map (with the caller's output values) on exactly the input's voxel
grid (same affine and shape). Clicks per prompt (voxel indices of the input, :class:`textdiffseg.clicks.Clicks`)
change that prompt's mask near them only: a model with a click branch is conditioned on them, and every click then
edits the mask on the input grid (:mod:`textdiffseg.click_edit`: its intensity region is added or removed).
:class:`WholeVolumePipeline` is that pipeline around any volume predictor (the benchmarks' baselines use it too).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing, dense_patch_slices
from monai.inferers import sliding_window_inference
from monai.transforms import Orientation, Spacing

from textdiffseg.click_edit import DEFAULT_CLICK_EDITS, ClickEditSettings, apply_click_edits
from textdiffseg.clicks import (
    CLICK_RADIUS_MM,
    MAX_CLICKS,
    ClickError,
    Clicks,
    check_inside,
    click_box,
    click_maps,
    click_weight,
    shift,
    to_grid,
)
from textdiffseg.data.vocabulary import PromptVocabulary
from textdiffseg.diffusion.sampling import prompt_seed, sample_masks
from textdiffseg.input_grid import to_input_grid
from textdiffseg.intensity import HUWindows
from textdiffseg.label_fusion import check_label_values, label_map_from_probabilities
from textdiffseg.networks.model import Condition, TextDiffSeg
from textdiffseg.postprocess import (
    BELOW_DIAPHRAGM,
    LESION_ORGAN,
    PIECES,
    clean_probabilities,
    diaphragm_ceiling,
    keep_main_pieces,
    region_organs,
)
from textdiffseg.prompt_match import UNKNOWN_BELOW, PromptMatch, PromptMatcher, trained_structures
from textdiffseg.text.encoder import TextEncoder
from textdiffseg.zoom_in import FINE_OVERLAP, ZoomInput, ZoomPlan, foreground, refine_prompts

logger = logging.getLogger(__name__)

DEFAULT_MAX_VOXELS = 64_000_000  # of the volume resampled to the model spacing
# Denoiser calls per request (prompts x ensemble x steps x sliding windows) a server allows by default. The demo
# checkpoint (5 mm, 64x64x48 windows, 5 steps) needs 60 for one prompt on an abdomen (384x384x450 mm, 12 windows;
# 43 s on 2 loaded CPU cores) and 1,920 for 16 prompts on a 50x50x100 cm whole body; 16 prompts x ensemble 32 (which
# took 65 s and 5.2 GB on a single window) needs 2,560.
DEFAULT_MAX_DENOISER_CALLS = 2_000
# Samples denoised together (prompts x ensemble) at most: memory grows with it (16 x 32 = 512 at once took 5.2 GB),
# so larger requests are sampled in groups of prompts.
MAX_SAMPLES_PER_WINDOW = 64
MIN_SPACING_MM = 0.05  # voxel sizes outside these bounds are refused (here and in ``input_files``)
MAX_SPACING_MM = 50.0


class InvalidInputError(ValueError):
    """The image cannot be segmented as given; the message names the problem (shown to users as a 4xx)."""


class VolumeTooLargeError(InvalidInputError):
    """The volume resampled to the model spacing exceeds the voxel budget."""


class ComputeBudgetError(InvalidInputError):
    """The request needs more denoiser calls than the per-request compute budget allows."""


NO_CLICKS_MESSAGE = (
    "this server does not take clicks (click edits are off and its checkpoint has no click branch): send text or "
    "label prompts only, or turn click edits on (--conf click_edits true)"
)
PromptClicks = Sequence["Clicks | None"]  # one entry per prompt (None or empty: no clicks)


def check_clicks(clicks: PromptClicks | None, prompts: int, shape: Sequence[int], accepted: bool) -> bool:
    """Raise :class:`ClickError` for clicks a request cannot use; returns whether there are any."""
    if clicks is None or not any(c for c in clicks):
        return False
    if not accepted:
        raise ClickError(NO_CLICKS_MESSAGE)
    if len(clicks) != prompts:
        raise ClickError(f"clicks for {len(clicks)} prompts, but {prompts} prompt(s) were given")
    total = sum(len(c) for c in clicks if c)
    if total > MAX_CLICKS:
        raise ClickError(f"{total} clicks in one request; the limit is {MAX_CLICKS}")
    for one in clicks:
        if one:
            check_inside(one, shape)
    return True


@dataclass
class Prediction:
    """Per-prompt results on the input's voxel grid."""

    prompts: list[str]
    probability: np.ndarray  # (P, X, Y, Z) float32
    uncertainty: np.ndarray  # (P, X, Y, Z) float32, binary entropy (bits) of the ensemble mean
    label_map: np.ndarray  # (X, Y, Z) uint8, values[i] for prompts[i]; the more confident prompt wins overlaps
    affine: np.ndarray  # 4x4, equal to the input's
    matches: list[PromptMatch] | None = None  # how each prompt was understood (Segmenter); None: not checked
    postprocessing: list[str] = field(default_factory=list)  # what the clean-up removed (textdiffseg.postprocess)
    passes: list[list[str]] = field(default_factory=list)  # per prompt, the passes that made its mask
    zoom_notes: list[str] = field(default_factory=list)  # why a prompt got no fine pass (textdiffseg.zoom_in)
    edited_voxels: list[int] = field(default_factory=list)  # per prompt, voxels its click edits changed


def prompt_slice(condition: Condition, start: int, stop: int) -> Condition:
    """The condition of prompts ``start:stop`` (image skips shared by all prompts stay as they are)."""
    skips = [s[start:stop] if s.shape[0] > 1 else s for s in condition.skips]
    clicks = None if condition.clicks is None else condition.clicks[start:stop]
    prior = None if condition.prior is None else condition.prior[start:stop]
    text = None if condition.text is None else condition.text[start:stop]
    return Condition(condition.fused[start:stop], skips, condition.image_size, clicks, prior, text)


def check_image(image: MetaTensor, spacing: tuple[float, float, float], max_voxels: int) -> None:
    """Raise :class:`InvalidInputError` for images that are not a single-channel 3D CT the model can handle."""
    if image.ndim != 4 or image.shape[0] != 1:
        dims = image.ndim - 1 if image.ndim == 4 else image.ndim
        raise InvalidInputError(f"expected a single-channel 3D image, got shape {tuple(image.shape)} ({dims}D)")
    if min(image.shape[1:]) < 2:
        raise InvalidInputError(f"expected a 3D volume, got a {tuple(image.shape[1:])} image (a 2D slice?)")
    if not torch.isfinite(image).all():
        raise InvalidInputError("image contains NaN or infinite values")
    zooms = affine_to_spacing(np.asarray(image.affine, np.float64))
    if not np.all((zooms >= MIN_SPACING_MM) & (zooms <= MAX_SPACING_MM)):
        raise InvalidInputError(
            f"voxel spacing {tuple(np.round(zooms, 4))} mm is outside {MIN_SPACING_MM:g}-{MAX_SPACING_MM:g} mm"
        )
    resampled = np.prod(np.asarray(image.shape[1:]) * zooms / np.asarray(spacing))
    if resampled > max_voxels:
        raise VolumeTooLargeError(
            f"volume would have {int(resampled):,} voxels at {spacing} mm, over the budget of {max_voxels:,}"
        )


def sliding_window_count(shape: Sequence[int], roi_size: Sequence[int], overlap: float) -> int:
    """How many windows MONAI's ``sliding_window_inference`` runs on a volume of ``shape`` (same padding and math)."""
    image_size = [max(int(s), int(r)) for s, r in zip(shape, roi_size)]
    interval = [r if r == s else max(1, int(r * (1 - overlap))) for s, r in zip(image_size, roi_size)]
    return len(dense_patch_slices(image_size, roi_size, interval))


class WholeVolumePipeline:
    """Whole-CT inference around a volume predictor, from the input CT to a :class:`Prediction` on its grid.

    Checks, RAS + resampling to ``spacing``, intensity scaling, every map resampled back onto the input grid, one
    label map with the caller's values. Subclasses implement :meth:`segment_volume` and may refuse a request in
    :meth:`check_request`.

    Args:
        spacing: the working spacing (mm) volumes are resampled to.
        hu_window: HU range mapped to [0, 1] (clipped), or several ranges (one input channel each).
        max_voxels: refuse volumes larger than this at ``spacing``.
        postprocess: clean each prompt's mask by its anatomy (``textdiffseg.postprocess``: organs keep their main
            pieces, lesions stay in their organ, nothing from below the diaphragm at the level of the chest) before it
            is resampled to the input grid.
        click_edits: how clicks edit a mask on the input grid (:mod:`textdiffseg.click_edit`); ``None``: no edits
            (clicks are then taken only by a model with a click branch).
    """

    def __init__(
        self,
        spacing: tuple[float, float, float],
        hu_window: tuple[float, float] | tuple[tuple[float, float], ...],
        max_voxels: int = DEFAULT_MAX_VOXELS,
        postprocess: bool = True,
        click_edits: ClickEditSettings | None = DEFAULT_CLICK_EDITS,
    ) -> None:
        self.spacing = spacing
        self.click_edits = click_edits
        self.max_voxels = max_voxels
        self.postprocess = postprocess
        self._scale = HUWindows(hu_window)

    def anatomy_of(self, prompts: Sequence[str]) -> list[str | None]:
        """The vocabulary structure each prompt names (``None`` for free text), for the clean-up rules."""
        vocabulary = PromptVocabulary.load()
        return [vocabulary.canonical(prompt) for prompt in prompts]

    @property
    def model_takes_clicks(self) -> bool:
        """Whether :meth:`segment_volume` is conditioned on clicks (default: no)."""
        return False

    @property
    def accepts_clicks(self) -> bool:
        """Whether :meth:`predict` takes clicks: they edit the mask, or the model is conditioned on them."""
        return self.click_edits is not None or self.model_takes_clicks

    def region_organs(self, anatomy: Sequence[str | None]) -> list[str]:
        """The organs :meth:`segment_organs` segments for a request's lesions whose organ it does not name, so that
        they are kept inside it (``textdiffseg.postprocess.region_organs``); default: none (no model to ask)."""
        return []

    def segment_organs(self, volume: torch.Tensor, organs: list[str]) -> dict[str, np.ndarray]:
        """Masks ``(D, H, W)`` bool of ``organs`` in a normalised volume at the working spacing; default: none."""
        return {}

    def check_request(
        self,
        prompts: list[str],
        shape: tuple[int, ...],
        clicks: PromptClicks | None = None,
        organ_passes: int = 0,
    ) -> None:
        """Refuse a request before any model call (``shape``: the volume at the working spacing, ``clicks`` on that
        grid, ``organ_passes``: organs :meth:`segment_organs` will segment for its lesions); default: accept."""

    def segment_volume(self, volume: torch.Tensor, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(P, D, H, W)`` probabilities and entropies (``None``: no uncertainty) of a normalised ``(C, D, H, W)``.

        Pipelines that accept clicks also take ``clicks=`` (per prompt, on the volume's grid)."""
        raise NotImplementedError

    def predict(
        self,
        image: MetaTensor,
        prompts: list[str],
        values: Sequence[int] | None = None,
        clicks: PromptClicks | None = None,
    ) -> Prediction:
        """Segment ``prompts`` in a CT (``MetaTensor`` (1, X, Y, Z) in HU with its affine).

        ``values`` are the label map's value of each prompt (1..255; default 1..P). ``clicks``: one
        :class:`textdiffseg.clicks.Clicks` (voxel indices of ``image``) or ``None`` per prompt; they go to the model
        grid through the same affine path as the image. Clicks on a pipeline that does not take them, outside the
        image or over :data:`textdiffseg.clicks.MAX_CLICKS` raise :class:`textdiffseg.clicks.ClickError`. A
        prompt the model was conditioned on clicks for is not cleaned by its anatomy (the annotator decides what
        belongs to it); clicks edit each mask last (after any zoom-in), so each click holds: a foreground click's
        voxel is in the mask, a background click's voxel is not.
        """
        if not prompts:
            raise InvalidInputError("no prompt given")
        prompts = list(prompts)
        values = check_label_values(range(1, len(prompts) + 1) if values is None else values, len(prompts))
        image = image if isinstance(image, MetaTensor) else MetaTensor(image)
        check_image(image, self.spacing, self.max_voxels)
        clicked = check_clicks(clicks, len(prompts), tuple(image.shape[1:]), self.accepts_clicks)
        original = image.float()
        resampled = Spacing(pixdim=self.spacing, mode="bilinear")(Orientation(axcodes="RAS")(original))
        grid_clicks = (
            [to_grid(c, original.affine, resampled.affine) if c else None for c in clicks or ()] if clicked else None
        )
        if not self.model_takes_clicks:
            grid_clicks = None  # the clicks only edit the result (below)
        anatomy = self.anatomy_of(prompts)
        if grid_clicks is not None:  # the model's clicked result is not cleaned (the annotator decides)
            anatomy = [None if c else a for a, c in zip(anatomy, grid_clicks)]
        organs = self.region_organs(anatomy) if self.postprocess else []
        self.check_request(prompts, tuple(resampled.shape[1:]), grid_clicks, organ_passes=len(organs))
        volume = self._scale(resampled.as_tensor())
        if grid_clicks is None:
            probability_maps, entropy_maps = self.segment_volume(volume, prompts)
        else:
            probability_maps, entropy_maps = self.segment_volume(volume, prompts, clicks=grid_clicks)  # type: ignore[call-arg]
        notes: list[str] = []
        organ_masks: dict[str, np.ndarray] = {}
        if self.postprocess:
            organ_masks = self.segment_organs(volume, organs) if organs else {}
            gated = BELOW_DIAPHRAGM.intersection(anatomy)  # lesions' region organs are below it too
            ceiling = diaphragm_ceiling(resampled[0].numpy(), self.spacing[2]) if gated else None
            with torch.inference_mode():  # the maps may be inference tensors, changed in place
                notes = clean_probabilities(probability_maps, anatomy, organ_masks, ceiling)
        # Back onto the input grid one map at a time, written in place: a 512x512x300 CT is 79 M voxels, so
        # resampling every map of every prompt at once would need gigabytes of transient memory.
        probability = np.empty((len(prompts), *original.shape[1:]), np.float32)
        uncertainty = np.zeros_like(probability)  # calloc'd: costs no memory until written
        for i in range(len(prompts)):
            to_input_grid(probability_maps[i][None], resampled.affine, original, out=probability[i : i + 1])
            if entropy_maps is not None:
                to_input_grid(entropy_maps[i][None], resampled.affine, original, out=uncertainty[i : i + 1])
        passes, zoom_notes = self.zoom_in(
            ZoomInput(
                original, np.asarray(resampled.affine), self.spacing, volume, probability_maps, anatomy, organ_masks
            ),
            prompts,
            probability,
            uncertainty,
        )
        for i, name in enumerate(anatomy):  # lesions kept inside an organ segmented for them
            if name in LESION_ORGAN and any(o in organ_masks for o in LESION_ORGAN[name]):
                passes[i].insert(1, "organ")
        edited = self.edit_by_clicks(original, probability, uncertainty, clicks if clicked else None)
        label_map = label_map_from_probabilities(probability, values)
        affine = np.asarray(original.affine)
        return Prediction(
            prompts,
            probability,
            uncertainty,
            label_map,
            affine,
            postprocessing=notes,
            passes=passes,
            zoom_notes=zoom_notes,
            edited_voxels=edited,
        )

    def edit_by_clicks(
        self, image: MetaTensor, probability: np.ndarray, uncertainty: np.ndarray, clicks: PromptClicks | None
    ) -> list[int]:
        """Each prompt's clicks edit its maps on the input grid in place (none when click edits are off); the edited
        voxels become certain. Returns the voxels changed per prompt."""
        if self.click_edits is None or clicks is None:
            return [0] * len(probability)
        hu = image[0].detach().cpu().numpy()
        spacing = affine_to_spacing(np.asarray(image.affine, np.float64))
        return [
            apply_click_edits(probability[i], hu, one, spacing, self.click_edits, uncertainty[i]) if one else 0
            for i, one in enumerate(clicks)
        ]

    def zoom_in(
        self, coarse: ZoomInput, prompts: list[str], probability: np.ndarray, uncertainty: np.ndarray
    ) -> tuple[list[list[str]], list[str]]:
        """Refine prompts' masks on the input grid in place (``probability``, ``uncertainty``: ``(P, *input)``);
        returns each prompt's passes and a note per prompt that was not refined. Default: the coarse pass only."""
        return [["coarse"] for _ in prompts], []


class Segmenter(WholeVolumePipeline):
    """Runs a trained model on whole CTs.

    Args:
        model: a trained :class:`TextDiffSeg`.
        text_encoder: the encoder the model was trained with (see ``checkpoint.load_for_inference``).
        steps: DDIM steps (default: the model's ``sampling_steps``).
        ensemble: diffusion samples per prompt; >1 gives a meaningful variance.
        overlap: sliding-window overlap.
        device: torch device.
        seed: seed of the sampling noise; each prompt's noise is seeded from it and the prompt's text
            (:func:`textdiffseg.diffusion.sampling.prompt_seed`): the same request gives the same bytes.
        max_voxels: refuse volumes larger than this at the model spacing.
        sw_batch_size: windows handed to the predictor at once (each still gets its own image features).
        max_denoiser_calls: refuse (:class:`ComputeBudgetError`) requests needing more denoiser calls than this
            (prompts x ensemble x steps x sliding windows); ``None``: no limit.
        vocabulary: phrasings of the trained structures and the names that are not free text, for
            :class:`textdiffseg.prompt_match.PromptMatcher` (default: the built-in vocabulary).
        unknown_below: prompts the model was not trained on (see :mod:`textdiffseg.prompt_match`) get an empty mask
            and a warning; free text is unknown below this similarity. ``None``: every prompt is segmented as is.
        postprocess: see :class:`WholeVolumePipeline`.
        click_radius_mm: a prompt's clicks change its mask up to this distance from them (the last
            ``textdiffseg.clicks.CLICK_RAMP_MM`` blended); beyond it the text-only mask is kept.
        click_edits: see :class:`WholeVolumePipeline`.
        fine_stage: the checkpoint's zoom-in fine stage (``checkpoint.load_fine_stage``), or ``None``.
        fine_pass: run the fine stage (when there is one) on the prompts it was trained on
            (:mod:`textdiffseg.zoom_in`); ``False``: the coarse pass only.
    """

    def __init__(
        self,
        model: TextDiffSeg,
        text_encoder: TextEncoder,
        steps: int | None = None,
        ensemble: int = 1,
        overlap: float = 0.25,
        device: str | torch.device = "cpu",
        seed: int = 0,
        max_voxels: int = DEFAULT_MAX_VOXELS,
        sw_batch_size: int = 1,
        max_denoiser_calls: int | None = None,
        vocabulary: PromptVocabulary | None = None,
        unknown_below: float | None = UNKNOWN_BELOW,
        postprocess: bool = True,
        click_radius_mm: float = CLICK_RADIUS_MM,
        fine_stage: TextDiffSeg | None = None,
        fine_pass: bool = True,
        click_edits: ClickEditSettings | None = DEFAULT_CLICK_EDITS,
    ) -> None:
        super().__init__(model.config.spacing, model.config.input_windows, max_voxels, postprocess, click_edits)
        self.fine = (
            Segmenter(fine_stage, text_encoder, steps, ensemble, FINE_OVERLAP, device, seed, unknown_below=None)
            if fine_stage is not None and fine_pass
            else None
        )
        self.click_radius_mm = click_radius_mm
        self.model = model.eval().to(device)
        self.text_encoder = text_encoder
        self.config = model.config
        self.steps = steps or self.config.sampling_steps
        self.ensemble = max(1, ensemble)
        self.overlap = overlap
        self.device = torch.device(device)
        self.seed = seed
        self.sw_batch_size = max(1, sw_batch_size)
        self.max_denoiser_calls = max_denoiser_calls
        self.matcher = (
            None
            if unknown_below is None
            else PromptMatcher(text_encoder, trained_structures(model.config), vocabulary, unknown_below)
        )
        self._understood: dict[tuple[str, ...], list[PromptMatch]] = {}

    def understand(self, prompts: Sequence[str]) -> list[PromptMatch] | None:
        """How each prompt is understood (``None`` when the check is off); matched once per prompt list."""
        if self.matcher is None:
            return None
        key = tuple(prompts)
        if key not in self._understood:
            self._understood[key] = self.matcher.match_all(list(key))
        return self._understood[key]

    def anatomy_of(self, prompts: Sequence[str]) -> list[str | None]:
        """The trained structure each prompt was understood as (free text near one counts as that structure)."""
        matches = self.understand(prompts)
        if matches is None:
            return super().anatomy_of(prompts)
        return [match.nearest if match.known else None for match in matches]

    @property
    def model_takes_clicks(self) -> bool:
        """Whether the model has a click branch."""
        return self.model.takes_clicks

    def predict(
        self,
        image: MetaTensor,
        prompts: list[str],
        values: Sequence[int] | None = None,
        clicks: PromptClicks | None = None,
    ) -> Prediction:
        """As :meth:`WholeVolumePipeline.predict`; prompts the model was not trained on get an empty mask (the
        compute budget still counts them; clicks do not change that) and ``Prediction.matches`` says how each prompt
        was understood."""
        prediction = super().predict(image, prompts, values, clicks)
        prediction.matches = self.understand(prompts)
        for match in prediction.matches or []:
            if not match.known:
                logger.warning("empty mask for an unknown prompt: %s", match.warning)
        return prediction

    def click_box(self, clicks: Clicks, shape: Sequence[int]) -> tuple[slice, slice, slice]:
        """The part of the volume (model grid) the clicked pass of a prompt runs on."""
        return click_box(clicks, shape, self.config.spacing, self.config.roi_size, self.click_radius_mm)

    def _click_windows(self, shape: tuple[int, ...], clicks: PromptClicks | None) -> int:
        boxes = [self.click_box(c, shape) for c in clicks or () if c]
        return sum(
            sliding_window_count([b.stop - b.start for b in box], self.config.roi_size, self.overlap) for box in boxes
        )

    def denoiser_calls(self, prompts: int, shape: tuple[int, ...], clicks: PromptClicks | None = None) -> int:
        """Denoiser calls of segmenting ``prompts`` prompts on a volume of ``shape`` (the model grid)."""
        windows = sliding_window_count(shape, self.config.roi_size, self.overlap)
        return (prompts * windows + self._click_windows(shape, clicks)) * self.ensemble * self.steps

    def zoom_in(
        self, coarse: ZoomInput, prompts: list[str], probability: np.ndarray, uncertainty: np.ndarray
    ) -> tuple[list[list[str]], list[str]]:
        """The fine pass of :mod:`textdiffseg.zoom_in` on the prompts the fine stage was trained on (none without a
        fine stage, or with ``fine_pass=False``); it spends what the coarse pass left of the compute budget."""
        if self.fine is None:
            return super().zoom_in(coarse, prompts, probability, uncertainty)
        shape = tuple(coarse.volume.shape[1:])
        budget = None
        if self.max_denoiser_calls is not None:
            budget = self.max_denoiser_calls - self.denoiser_calls(len(prompts) + len(coarse.organs), shape)

        def coarse_pass(organs: list[str]) -> torch.Tensor:
            return self.predict_normalized(coarse.volume, organs)[0]

        refinable = frozenset(trained_structures(self.fine.config))
        plan = ZoomPlan(self.fine, refinable, coarse_pass, self.denoiser_calls(1, shape), budget)
        return refine_prompts(plan, coarse, prompts, probability, uncertainty)

    def region_organs(self, anatomy: Sequence[str | None]) -> list[str]:
        """The organs to segment for lesions whose organ the request does not name, among those the model knows."""
        known = set(trained_structures(self.config))
        return [organ for organ in region_organs(anatomy) if organ in known]

    def segment_organs(self, volume: torch.Tensor, organs: list[str]) -> dict[str, np.ndarray]:
        """One pass of the model over ``organs``; each mask keeps its main pieces (``textdiffseg.postprocess``)."""
        probability = self.predict_normalized(volume, organs)[0]
        masks = {organ: foreground(probability[k]) for k, organ in enumerate(organs)}
        return {
            organ: keep_main_pieces(mask, PIECES[organ]) if organ in PIECES else mask for organ, mask in masks.items()
        }

    def check_request(
        self,
        prompts: list[str],
        shape: tuple[int, ...],
        clicks: PromptClicks | None = None,
        organ_passes: int = 0,
    ) -> None:
        """Refuse requests over the compute budget, naming the cost, each factor, the limit and how to lower it.

        A clicked prompt costs the windows of its clicked pass (around its clicks) on top of its text-only pass; an
        organ segmented for a lesion (``organ_passes``) costs as a prompt."""
        if self.max_denoiser_calls is None:
            return
        cost = self.denoiser_calls(len(prompts) + organ_passes, shape, clicks)
        if cost > self.max_denoiser_calls:
            windows = sliding_window_count(shape, self.config.roi_size, self.overlap)
            click_windows = self._click_windows(shape, clicks)
            clicked = f" + {click_windows} window(s) of clicked passes" if click_windows else ""
            organs = f" + {organ_passes} organ(s) for lesions" if organ_passes else ""
            raise ComputeBudgetError(
                f"request needs {cost:,} denoiser calls ({len(prompts)} prompt(s){organs} x {windows} sliding "
                f"window(s){clicked}, x ensemble {self.ensemble} x {self.steps} sampling steps), over the limit of "
                f"{self.max_denoiser_calls:,} per request: send fewer prompts, a smaller ensemble, fewer "
                "sampling_steps or a smaller image"
            )

    def segment_volume(
        self, volume: torch.Tensor, prompts: list[str], clicks: PromptClicks | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean probability and entropy of the diffusion ensemble, ``(P, D, H, W)`` each; zero for unknown prompts.

        A prompt with ``clicks`` (on the volume's grid) is sampled again with them around its clicks
        (:meth:`click_box`), and that result replaces the text-only one by :func:`textdiffseg.clicks.click_weight`.
        """
        matches = self.understand(prompts)
        known = [i for i in range(len(prompts)) if matches is None or matches[i].known]
        if len(known) == len(prompts):
            out = self.predict_normalized(volume, prompts)
            probability, entropy = out[0], out[2]
        else:
            probability = torch.zeros((len(prompts), *volume.shape[1:]))
            entropy = torch.zeros_like(probability)
            if known:
                out = self.predict_normalized(volume, [prompts[i] for i in known])
                rows = torch.tensor(known)
                probability[rows], entropy[rows] = out[0], out[2]
        for i in known:
            if clicks is not None and clicks[i]:
                self._apply_clicks(volume, prompts[i], clicks[i], probability[i], entropy[i])  # type: ignore[arg-type]
        return probability, entropy

    def _apply_clicks(
        self, volume: torch.Tensor, prompt: str, clicks: Clicks, probability: torch.Tensor, entropy: torch.Tensor
    ) -> None:
        """Sample one prompt with its clicks around them and blend that into its text-only maps (in place)."""
        box = self.click_box(clicks, volume.shape[1:])
        local = shift(clicks, [b.start for b in box])
        out = self.predict_normalized(volume[(slice(None), *box)], [prompt], [local])
        weight = click_weight(local, out.shape[2:], self.config.spacing, self.click_radius_mm)
        with torch.inference_mode():
            for target, clicked in ((probability, out[0, 0]), (entropy, out[2, 0])):
                region = target[box]
                region.mul_(1 - weight).add_(clicked * weight)

    def predict_normalized(
        self,
        volume: torch.Tensor,
        prompts: list[str],
        clicks: PromptClicks | None = None,
        prior: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sliding-window sampling on a normalised volume at the model spacing.

        Args:
            volume: (C, D, H, W) intensities already scaled to [0, 1].
            prompts: P prompts; text is encoded once and image features once per window.
            clicks: per prompt, clicks on the volume's grid (models with a click branch); their maps travel with the
                image through the sliding windows.
            prior: (P, 1, D, H, W) each prompt's coarse probability on the volume's grid (zoom-in fine stages); it
                travels with the image through the sliding windows as well.

        Returns:
            (3, P, D, H, W): mean probability, ensemble variance, entropy.
        """
        tokens, mask = self.text_encoder.encode(prompts)
        tokens, mask = tokens.to(self.device), mask.to(self.device)
        structures = self.anatomy_of(prompts) if self.model.config.learned_prompts else None  # see condition()
        # one noise stream per prompt, consumed window after window: a prompt's mask depends on the seed, the
        # prompt, the image and the settings only, never on the other prompts of the request or their order
        generators = [torch.Generator(device=self.device).manual_seed(prompt_seed(self.seed, t)) for t in prompts]
        p = len(prompts)
        channels = volume.shape[0]
        if clicks is not None:
            volume = torch.cat([volume, click_maps(clicks, volume.shape[1:]).flatten(0, 1)])
        if prior is not None:
            volume = torch.cat([volume, prior.flatten(0, 1).to(volume.dtype)])
        click_end = channels + (2 * p if clicks is not None else 0)

        def predictor(window: torch.Tensor) -> torch.Tensor:
            outs = []
            for one in window.split(1):  # image features once per window, shared by all prompts
                maps = one[0, channels:click_end].view(p, 2, *one.shape[2:]) if clicks is not None else None
                window_prior = one[0, click_end:].view(p, 1, *one.shape[2:]) if prior is not None else None
                one = one[:, :channels]
                condition = self.model.condition(one, tokens, mask, maps, window_prior, structures)
                # prompts in groups of at most MAX_SAMPLES_PER_WINDOW samples: memory stays bounded however many
                # prompts a request has (the noise is per prompt, so grouping changes no draw)
                group = max(1, MAX_SAMPLES_PER_WINDOW // self.ensemble)
                parts = []
                for start in range(0, p, group):
                    result = sample_masks(
                        self.model,
                        prompt_slice(condition, start, start + group),
                        self.steps,
                        self.ensemble,
                        generators[start : start + group],
                    )
                    parts.append(torch.cat([result.probability, result.variance, result.entropy], dim=1))
                outs.append(torch.cat(parts).view(1, 3 * p, *one.shape[2:]))
            return torch.cat(outs)

        with torch.inference_mode():
            out = sliding_window_inference(
                volume[None].to(self.device),
                self.config.roi_size,
                sw_batch_size=self.sw_batch_size,
                predictor=predictor,
                overlap=self.overlap,
                mode="gaussian",
                padding_mode="constant",
                cval=0.0,
            )
        return out.view(p, 3, *volume.shape[1:]).transpose(0, 1).cpu()
