"""``/infer/textdiffseg``: segment what the user typed (or ticked) in a CT, on the CT's own voxel grid.

Request parameters (multipart ``params`` JSON; the clients show the ``config`` below as editable options):

* ``text_prompt``: free text; several prompts separated by ``;`` or given as a JSON list. ``""`` = none typed.
* ``label_prompt``: list of vocabulary indices (OHIF's class prompts). At least one of the two must name something
  (HTTP 400 "no prompt" otherwise).
* ``ensemble`` (1-32); ``sampling_steps`` (0 = ``--conf sampling_steps``, else the checkpoint's value);
  ``uncertainty`` (true: per-prompt mean entropy in the result JSON and a voxelwise map saved as datastore label tag
  ``uncertainty``, see ``uncertainty_label``).
* ``postprocess`` (true): each mask is cleaned by its anatomy before it is returned (``textdiffseg.postprocess``:
  organs keep their main pieces and what touches them, nothing from below the diaphragm stays at the level of the
  chest, lesions keep the pieces inside their organ: the one the request names, else one the model segments for it,
  which adds ``"organ"`` to the lesion's ``passes`` and costs a pass of its own); ``postprocessing`` in the answer
  lists what was removed. ``false``: the raw thresholded mask.
* ``fine_pass`` (true): when the checkpoint holds a zoom-in fine stage, each prompt it was trained on is segmented
  again at 1.5 mm in-plane over the region the coarse pass found (lesions: their organ's region;
  ``textdiffseg.zoom_in``). Each prompt of the answer lists its ``passes`` (``["coarse"]`` or
  ``["coarse", "fine"]``, with ``"organ"`` after ``"coarse"`` for a lesion kept inside an organ segmented for it);
  ``zoom_in`` says why a prompt got no fine pass. ``--conf fine_pass false`` turns it off for the server.
* ``seed`` (0 by default): the same request (image, prompts, settings, seed) always gives the same bytes; each
  prompt's noise is seeded from the seed and the prompt's text, so it does not depend on the other prompts. Another
  seed gives another sample (``ensemble`` > 1 still gives the spread of several).
* clicks: ``points`` + ``point_labels`` (VISTA3D style, as OHIF's Point Prompts tab sends them with
  ``label_prompt``) and/or ``foreground``/``background`` (deepgrow style, as Slicer sends them): voxel indices
  ``[i, j, k]`` of the image, at most 64, on the first prompt. Each click adds (foreground) or removes (background)
  its intensity region within 20 mm of it (``textdiffseg.click_edit``); a checkpoint with a click branch is also
  conditioned on them within 40 mm (``lib.infers.click_params``, ``textdiffseg.clicks``). Malformed points, points
  outside the image, labels not 0/1 or not one per point are a 400, and so are clicks when ``--conf click_edits
  false`` and the checkpoint has no click branch. The answer's ``clicks`` says how many of each were used, for which
  prompt, and how many voxels the edits changed (``edited_voxels``). ``textdiffseg_clicks``
  (``lib.infers.point_prompt``) is this task under OHIF's ``vista3d`` type.
* ``save_label``/``label_tag`` (MONAI Label): store the result in the datastore (tag ``original`` by default).
* MONAI Label's writer keys are honoured as usual: ``result_extension`` (``.nii.gz``, ``.nrrd``...),
  ``result_dtype``, ``result_compress``. Without ``result_compress`` an NRRD answer is gzip-encoded inside the file
  (62 MB -> 0.16 MB for a 512x512x236 CT), except when its byte count is odd (OHIF's plugin cannot inflate that).
  OHIF sends ``result_compress: false``; its answer is gzip-compressed over HTTP instead
  (``textdiffseg_server.compression``). ``device``, ``roi_size``, ``sw_*`` are ignored: the model runs where
  ``--conf device`` says, with the checkpoint's own sliding-window patch.

Response: one label map (uint8 by default) with each prompt's ``ResolvedPrompt.value`` (the vocabulary index, or
``len(vocabulary) + 1, ...`` for free text); ``label_names`` = ``{name: value}`` of the prompts segmented;
``prompts`` = ``[{"name", "value", "text", "understood_as", "nearest_trained", "similarity", "known"}]``: how each
prompt was understood (the nearest structure the served checkpoint was trained on, ``textdiffseg.prompt_match``). A
prompt it was not trained on (``known: false``, ``understood_as: null``) gets an empty mask, and ``warning`` says so.
3D Slicer names segments from ``label_names``; OHIF maps values through the vocabulary in ``/info`` and drops
free-text values. Errors: 400 bad prompt/parameter/image, 413 volume too large or over the ``--conf
max_denoiser_calls`` compute budget, 503 no usable checkpoint (the model is also hidden from ``/info`` until a
checkpoint exists). The image file is checked before its voxels are read
(``textdiffseg.input_files``) and a file the loader cannot read is a 400.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.data import MetaTensor
from monai.transforms import EnsureChannelFirstd, LoadImaged
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask
from nibabel.filebasedimages import ImageFileError

from lib.configs.textdiffseg import AppSettings
from lib.infers.http_errors import as_http_errors
from lib.infers.infer_params import parse_infer_params
from lib.infers.label_groups import label_groups
from lib.infers.uncertainty_label import UNCERTAINTY_FILE_KEY, write_uncertainty_map
from textdiffseg.inference import InvalidInputError
from textdiffseg.input_files import check_image_file
from textdiffseg.service import SegmentationService
from textdiffseg.uncertainty import prompt_uncertainty, voxel_uncertainty

logger = logging.getLogger(__name__)


# What MONAI's readers (nibabel, ITK, PIL, pynrrd) raise for a file that is not a readable image: a bad upload.
UNREADABLE_IMAGE_ERRORS = (RuntimeError, OSError, ValueError, EOFError, zlib.error, ImageFileError)


def _root_cause(err: BaseException) -> str:
    """The innermost exception's message (MONAI wraps loader errors in 'applying transform ...')."""
    while err.__cause__ is not None:
        err = err.__cause__
    return f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"


class TextPromptInfer(BasicInferTask):
    """Text-prompted 3D segmentation served through a :class:`SegmentationService` (no MONAI network or inferer)."""

    def __init__(self, settings: AppSettings, service: SegmentationService) -> None:
        super().__init__(
            path=[str(p) for p in settings.model_candidates()],
            network=None,
            type=InferType.SEGMENTATION,
            labels=settings.vocabulary.index_map(),
            dimension=3,
            description="Text-prompted CT segmentation (TextDiffSeg): type structures in text_prompt, ';'-separated",
            config={
                "text_prompt": "",
                "ensemble": settings.ensemble,
                "sampling_steps": settings.sampling_steps or 0,
                "uncertainty": False,
                "seed": 0,
                "postprocess": True,
                "fine_pass": True,
            },
        )
        self.settings = settings
        self.service = service

    def pre_transforms(self, data: dict[str, Any] | None = None) -> Sequence[Callable]:
        """Load only: the library resamples to the model spacing and returns on the input grid."""
        return [LoadImaged(keys="image", image_only=True), EnsureChannelFirstd(keys="image")]

    def run_pre_transforms(self, data: dict[str, Any], transforms: Sequence[Callable]) -> dict[str, Any]:
        """Check the file header first, then load; a file the loader cannot read is a 400 naming the reason."""
        with as_http_errors():
            if isinstance(data.get(self.input_key), str):
                check_image_file(data[self.input_key], self.settings.max_file_voxels)
            try:
                return super().run_pre_transforms(data, transforms)
            except UNREADABLE_IMAGE_ERRORS as err:
                reason = _root_cause(err).replace(str(data.get(self.input_key)), "<image>")  # no server paths out
                raise InvalidInputError(f"could not read the image: {reason}") from err

    def inverse_transforms(self, data: dict[str, Any] | None = None) -> None:
        """Nothing to invert: the prediction is already on the input grid."""
        return None

    def post_transforms(self, data: dict[str, Any] | None = None) -> Sequence[Callable]:
        """None needed: ``run_inferer`` builds the final label map."""
        return []

    def run_inferer(self, data: dict[str, Any], convert_to_batch: bool = True, device: str = "cuda") -> dict[str, Any]:
        """Resolve the prompts, segment with the service (which builds the label map), store it and the result JSON."""
        with as_http_errors():
            params = parse_infer_params(
                data, self.settings.vocabulary, self.settings.ensemble, self.settings.sampling_steps
            )
            logger.info("segmenting %d prompt(s): %s", len(params.prompts), [p.name for p in params.prompts])
            prediction = self.service.segment(
                data[self.input_key],
                [p.text for p in params.prompts],
                values=[p.value for p in params.prompts],
                ensemble=params.ensemble,
                steps=params.steps,
                seed=params.seed,
                postprocess=params.postprocess,
                clicks=params.prompt_clicks(),
                fine_pass=params.fine_pass,
            )
        data[self.output_label_key] = MetaTensor(torch.from_numpy(prediction.label_map), affine=prediction.affine)
        matches = prediction.matches or [None] * len(params.prompts)
        result: dict[str, Any] = {
            "prompts": [
                {"name": p.name, "value": p.value, "text": p.text, **(m.as_json() if m else {}), "passes": passes}
                for p, m, passes in zip(params.prompts, matches, prediction.passes)
            ]
        }
        if prediction.zoom_notes:
            result["zoom_in"] = prediction.zoom_notes
        if params.clicks is not None:
            positive = sum(params.clicks.labels)
            result["clicks"] = {
                "prompt": params.prompts[0].name,
                "foreground": positive,
                "background": len(params.clicks) - positive,
                "edited_voxels": prediction.edited_voxels[0] if prediction.edited_voxels else 0,
            }
        if prediction.postprocessing:
            result["postprocessing"] = prediction.postprocessing
        warnings = [m.warning for m in matches if m is not None and m.warning]
        if warnings:
            result["warning"] = "; ".join(warnings)
        if params.uncertainty:
            means = prompt_uncertainty(prediction.probability, prediction.uncertainty)
            result["uncertainty"] = {p.name: round(u, 6) for p, u in zip(params.prompts, means)}
            result[UNCERTAINTY_FILE_KEY] = write_uncertainty_map(
                voxel_uncertainty(prediction.uncertainty), prediction.affine
            )
        data[self.output_json_key] = result
        return data

    def info(self) -> dict[str, Any]:
        """MONAI Label's model info plus ``label_groups`` (OHIF's Class Prompts buttons; see ``label_groups``)."""
        info = super().info()
        info["label_groups"] = label_groups(self.settings.vocabulary.names)
        return info

    def writer(self, data: dict[str, Any], extension: str | None = None, dtype: str | None = None) -> tuple[Any, Any]:
        """MONAI Label's writer, gzip-compressing by default (``result_compress``; see the module docstring)."""
        if "result_compress" not in data:
            label = data.get(self.output_label_key)
            data["result_compress"] = getattr(label, "nbytes", 0) % 2 == 0
        return super().writer(data, extension, dtype)

    def __call__(self, request: dict[str, Any], callbacks: dict | None = None) -> tuple[Any, dict[str, Any]]:
        """Run the MONAI Label pipeline, then name the output values after the prompts actually segmented."""
        label, result = super().__call__(request, callbacks)
        segmented = result.get("prompts")
        if segmented is None and isinstance(result.get(self.output_json_key), dict):  # skip_writer returns data
            segmented = result[self.output_json_key].get("prompts")
        if segmented is not None:
            result["label_names"] = {p["name"]: p["value"] for p in segmented}
        return label, result
