"""The datastore's submitted (``final``) labels as ``textdiffseg`` training cases.

Label values are named by the ``label_info`` clients save with a label (3D Slicer:
``[{"name": segment, "idx": value}]``); names that are vocabulary synonyms become the canonical name. A label saved
without usable ``label_info`` (e.g. the phantom's ``labels/final`` files written by ``textdiffseg.data.phantom``) is
read with the phantom's label values (``PHANTOM_TARGETS``). Multi-segment ``.seg.nrrd`` labels (Slicer's "allow
overlapping segments") are skipped with a warning: training needs one integer label map per image.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monailabel.interfaces.datastore import Datastore, DefaultLabelTag

from textdiffseg.data.folders import LabelledCase
from textdiffseg.data.label_maps import PHANTOM_TARGETS
from textdiffseg.data.vocabulary import PromptVocabulary
from textdiffseg.label_info import targets_from_label_info

logger = logging.getLogger(__name__)


def label_targets(info: Mapping[str, Any], vocabulary: PromptVocabulary) -> tuple[dict[str, tuple[int, ...]], str]:
    """Targets of one label from its datastore label info, and where they came from (``label_info``/``phantom``)."""
    targets = targets_from_label_info(info.get("label_info"), vocabulary)
    if targets:
        return targets, "label_info"
    return dict(PHANTOM_TARGETS), "phantom"


def _label_infos(datastore: Datastore) -> dict[str, tuple[str, dict[str, Any]]]:
    """``{real label path: (image id, label info)}`` for every image with a final label."""
    tag = DefaultLabelTag.FINAL
    found = {}
    for image_id in datastore.get_labeled_images(tag):
        label_id = datastore.get_label_by_image_id(image_id, tag)
        if not label_id:
            continue
        uri = datastore.get_label_uri(label_id, tag)
        if uri:
            found[os.path.realpath(uri)] = (image_id, datastore.get_label_info(label_id, tag) or {})
    return found


def cases_from_datastore(datastore: Datastore, vocabulary: PromptVocabulary) -> list[LabelledCase]:
    """One :class:`LabelledCase` per ``datastore.datalist()`` entry (images with a final label)."""
    datalist = datastore.datalist()
    infos = _label_infos(datastore)
    cases = []
    for entry in datalist:
        image, label = Path(entry["image"]), Path(entry["label"])
        if label.name.endswith(".seg.nrrd"):
            logger.warning("skipping %s: multi-segment .seg.nrrd labels are not supported for training", label)
            continue
        image_id, info = infos.get(os.path.realpath(label), (label.name.split(".")[0], {}))
        targets, source = label_targets(info, vocabulary)
        logger.info("training case %s: %d structure(s) from %s", image_id, len(targets), source)
        cases.append(LabelledCase(image_id, image, label, targets))
    return cases
