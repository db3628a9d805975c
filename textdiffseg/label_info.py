"""MONAI Label's ``label_info``: which name each value of a saved label map has.

Annotation clients store it with a label (3D Slicer: ``[{"name": "Liver", "idx": 1}, ...]``); a ``{name: idx}``
mapping is accepted too. :func:`label_info_names` is the one reader of it (training targets and the DICOM-SEG
datastore both use it):

* an entry is a mapping with ``name`` and ``idx`` (list/tuple form) or a ``name: idx`` item (mapping form);
* ``idx`` must be a positive integer: an ``int``, an integral ``float`` (``3.0``) or a string of one (``"3"``);
  booleans, 0, negatives, fractions and anything else are skipped;
* ``name`` must be a string with something in it; runs of white space become one space, case is kept;
* a later entry for a value replaces an earlier one; anything that is not a list, tuple or mapping names nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from textdiffseg.data.label_maps import targets_from_label_names
from textdiffseg.data.vocabulary import PromptVocabulary

IGNORED_LABEL_NAMES = frozenset({"background", "foreground_scribbles", "background_scribbles"})


def _label_value(idx: object) -> int | None:
    if isinstance(idx, bool):
        return None
    if isinstance(idx, float) and idx.is_integer():
        idx = int(idx)
    elif isinstance(idx, str) and idx.strip().isdigit():
        idx = int(idx.strip())
    return idx if isinstance(idx, int) and idx > 0 else None


def label_info_names(label_info: object) -> dict[int, str]:
    """``{value: name}`` of the usable entries of a ``label_info`` (rules in the module docstring)."""
    if isinstance(label_info, Mapping):
        entries: list[tuple[object, object]] = list(label_info.items())
    elif isinstance(label_info, list | tuple):
        entries = [(item.get("name"), item.get("idx")) for item in label_info if isinstance(item, Mapping)]
    else:
        return {}
    names: dict[int, str] = {}
    for name, idx in entries:
        value = _label_value(idx)
        cleaned = " ".join(name.split()) if isinstance(name, str) else ""
        if value is not None and cleaned:
            names[value] = cleaned
    return names


def targets_from_label_info(
    label_info: object, vocabulary: PromptVocabulary | None = None
) -> dict[str, tuple[int, ...]]:
    """Training targets of a label map described by a client's ``label_info``.

    Args:
        label_info: what MONAI Label clients save with a label (see :func:`label_info_names`). Names like
            ``background`` (:data:`IGNORED_LABEL_NAMES`) are ignored.
        vocabulary: when given, names that are known synonyms become their canonical vocabulary name
            ("Hepatic lesion" -> "liver tumor"); other names are kept as free text (lower case).

    Returns:
        ``{structure name: (label values,)}`` as :func:`textdiffseg.data.label_maps.targets_from_label_names`
        builds it (an organ also covers the lesions named after it); empty when nothing usable is described.
    """
    names: dict[int, str] = {}
    for value, name in label_info_names(label_info).items():
        if name.lower() in IGNORED_LABEL_NAMES:
            continue
        canonical = vocabulary.canonical(name) if vocabulary is not None else None
        names[value] = canonical or name.lower()
    return targets_from_label_names(names)
