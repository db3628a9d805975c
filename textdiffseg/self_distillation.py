"""Rehearsal on the site's own images: what the served model segments there, kept as training targets.

A site's first label names one structure ("ribs"); a run that sees only that prompt on the site's CT drifts away
from everything else the served model knew there (measured: one 12-minute ``/train`` of "ribs" with phantom
rehearsal alone took the regression pancreas from 0.65 to 0.35 Dice). Phantoms cannot rehearse real anatomy they do
not draw (lungs, vessels, bones), nor the site's scanner. So before training, the served model (the teacher, frozen)
segments every structure it knows on each of the site's training images, and that map becomes one more training
case of the same image: its targets are the teacher's masks, and structures the teacher finds absent are the
image's negatives; the site's own label is added to the same map. Training keeps answering those prompts as the
served model did, on the site's own data (pseudo-label rehearsal, as in continual semantic segmentation, e.g. PLOP,
Douillard et al. 2021). With real-CT rehearsal and a lower learning rate it halved what a one-label run lost on a real
abdomen, without removing it (README, "Measured: a new structure from ONE real CT label").

Structures may overlap ("kidney" holds "left kidney"); one integer map holds them exactly: every distinct set of
structures a voxel belongs to gets its own value, and a structure's target is every value whose set holds it
(:func:`overlapping_masks_to_label_map`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from monai.data import NibabelWriter
from monai.transforms import EnsureChannelFirst, LoadImage

from textdiffseg.checkpoint import load_for_inference
from textdiffseg.data.folders import LabelledCase
from textdiffseg.data.vocabulary import PromptVocabulary
from textdiffseg.inference import Segmenter

logger = logging.getLogger(__name__)

MAX_STRUCTURES = 62  # one bit per structure in an int64 code


def overlapping_masks_to_label_map(
    masks: Mapping[str, np.ndarray],
) -> tuple[np.ndarray, dict[str, tuple[int, ...]]]:
    """One integer label map (0 = in no structure) and each structure's label values, exact under overlaps.

    A structure with no voxel gets no value (``()``: absent, so a negative prompt for that image).
    """
    names = sorted(masks)
    if not names:
        raise ValueError("no masks to encode")
    if len(names) > MAX_STRUCTURES:
        raise ValueError(f"at most {MAX_STRUCTURES} structures can be encoded, got {len(names)}")
    shape = masks[names[0]].shape
    code = np.zeros(shape, dtype=np.int64)
    for bit, name in enumerate(names):
        if masks[name].shape != shape:
            raise ValueError(f"mask {name!r} has shape {masks[name].shape}, expected {shape}")
        code |= masks[name].astype(bool).astype(np.int64) << bit
    codes, label = np.unique(code, return_inverse=True)
    if codes[0] != 0:  # every voxel belongs to some structure: keep 0 for "none" anyway
        codes, label = np.concatenate([[0], codes]), label + 1
    targets = {name: tuple(int(v) for v in np.flatnonzero((codes >> bit) & 1)) for bit, name in enumerate(names)}
    return label.reshape(shape).astype(np.uint16), targets


def teacher_cases(
    cases: Sequence[LabelledCase],
    checkpoint: Path,
    structures: Sequence[str],
    out_dir: Path,
    device: str = "cpu",
    vocabulary: PromptVocabulary | None = None,
) -> list[LabelledCase]:
    """For each case, one more case of the same image whose targets are the case's own structures (its label, the
    truth) and the checkpoint's masks of the other ``structures``. Annotated together in one map, the site's new
    structure and what the model knew become known to be disjoint where they do not overlap, which is what the
    sampler's exclusion prompts need to teach "not ribs" on a rehearsal CT's liver.

    Label maps are written to ``out_dir/<case_id>_teacher.nii.gz`` on the image's grid (its loader's affine).
    Masks are what the publish gate scores: ``Segmenter.predict`` (post-processing included), probability > 0.5.
    """
    if not cases or not structures:
        return []
    model, encoder = load_for_inference(checkpoint, device=device)
    segmenter = Segmenter(model, encoder, device=device, vocabulary=vocabulary)
    loader, channel_first = LoadImage(image_only=True), EnsureChannelFirst()
    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    for case in cases:
        prompts = [name for name in structures if name not in case.targets]
        room = MAX_STRUCTURES - len(case.targets)
        if room <= 0:
            logger.warning("no teacher masks for %s: its label names %d structures", case.case_id, len(case.targets))
            continue
        if len(prompts) > room:  # one int64 code per voxel: the rest is still rehearsed by phantoms and real CT
            logger.warning(
                "teacher masks of %s: %d structure(s) left out (%s)",
                case.case_id,
                len(prompts) - room,
                ", ".join(prompts[room:]),
            )
            prompts = prompts[:room]
        if not prompts:
            continue
        image = channel_first(loader(str(case.image)))
        prediction = segmenter.predict(image, prompts)
        masks = {name: np.asarray(prediction.probability[i]) > 0.5 for i, name in enumerate(prompts)}
        site_label = np.asarray(channel_first(loader(str(case.label)))[0]).round().astype(np.int32)
        masks.update({name: np.isin(site_label, values) for name, values in case.targets.items()})
        label, targets = overlapping_masks_to_label_map(masks)
        path = out_dir / f"{case.case_id}_teacher.nii.gz"
        writer = NibabelWriter(output_dtype=np.uint16)  # on the image's own grid, whatever its file format
        writer.set_data_array(label, channel_dim=None)
        writer.set_metadata({"affine": image.affine, "original_affine": image.affine}, resample=False)
        writer.write(str(path), verbose=False)
        found = sorted(name for name, values in targets.items() if values)
        absent = len(targets) - len(found)
        logger.info("teacher masks of %s: %d structure(s) found, %d absent", case.case_id, len(found), absent)
        made.append(LabelledCase(f"{case.case_id}_teacher", case.image, path, targets))
    return made
