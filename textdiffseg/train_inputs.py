"""Checks of labelled cases before a training run starts: one clear, one-line error instead of a crash mid-run.

A run refuses (``TrainingInputError``, a ``ValueError``) when

* there is no labelled case at all,
* a label's voxel grid differs from its image's (shape), or
* none of the structures a case names (its ``label_info``, or the phantom's label values when it has none) has a
  single voxel in its label map: the client named segments the label does not contain.

Images and labels are read once each (MONAI ``LoadImage``: NIfTI, NRRD, DICOM series alike).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from monai.transforms import LoadImage

from textdiffseg.data.folders import LabelledCase


class TrainingInputError(ValueError):
    """The labelled data cannot be trained on; the message (one line) says which case and why."""


def _values_text(values: Sequence[int] | np.ndarray, limit: int = 12) -> str:
    shown = [str(int(v)) for v in list(values)[:limit]]
    more = f" and {len(values) - limit} more" if len(values) > limit else ""
    return ", ".join(shown) + more if shown else "none (the label is empty)"


def check_case(case: LabelledCase) -> None:
    """Refuse a case whose label does not fit its image or contains none of the structures it names."""
    loader = LoadImage(image_only=True)
    try:
        image_shape = tuple(loader(str(case.image)).shape)
        label = np.asarray(loader(str(case.label)))
    except Exception as err:  # readers raise many types for broken files; report them all the same way
        raise TrainingInputError(f"case {case.case_id}: cannot read its image or label: {err}") from err
    if tuple(label.shape) != image_shape:
        raise TrainingInputError(
            f"case {case.case_id}: the label's shape {tuple(label.shape)} differs from its image's {image_shape}; "
            "save a label on the image's own voxel grid"
        )
    if not case.targets:
        raise TrainingInputError(f"case {case.case_id}: its label names no structure to train on")
    present = np.unique(label.round().astype(np.int64))
    present = present[present != 0]
    named = {value for values in case.targets.values() for value in values}
    if not named & {int(v) for v in present}:
        names = ", ".join(f"{name} ({'/'.join(map(str, v))})" for name, v in sorted(case.targets.items()))
        raise TrainingInputError(
            f"case {case.case_id}: it names {names}, but the label has no voxel of those values "
            f"(values present: {_values_text(present)})"
        )


def check_cases(cases: Sequence[LabelledCase]) -> None:
    """Refuse an empty case list, or the first case that :func:`check_case` refuses."""
    if not cases:
        raise TrainingInputError("no image has a final label yet: submit labels (PUT /datastore/label) before training")
    for case in cases:
        check_case(case)
