"""How each dataset's integer label values map to prompt names.

A *target* is the set of label values that together form the structure a prompt names: "liver" in MSD Task03 is
liver parenchyma (1) plus tumour (2), because a radiologist asking for the liver expects the whole organ.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from textdiffseg.data.vocabulary import PromptVocabulary

# Phantom label values written by textdiffseg.data.phantom (integer label map).
PHANTOM_LABEL_NAMES: Mapping[int, str] = MappingProxyType(
    {
        1: "liver",
        2: "spleen",
        3: "left kidney",
        4: "right kidney",
        5: "pancreas",
        6: "colon",
        7: "liver tumor",
        8: "kidney tumor",
        9: "pancreas tumor",
        10: "colon tumor",
        # Painted in every phantom from the start but labelled only since 2026-11-28 (until then the model learned
        # them from one real abdomen); the stomach and gallbladder exist only with context "rich" / "packed".
        11: "aorta",
        12: "inferior vena cava",
        13: "stomach",
        14: "gallbladder",
    }
)

PHANTOM_TARGETS: Mapping[str, tuple[int, ...]] = MappingProxyType(
    {
        "liver": (1, 7),
        "spleen": (2,),
        "left kidney": (3,),  # kidney tumours are labelled 8 and counted in "kidney" / "kidney tumor"
        "right kidney": (4,),
        "kidney": (3, 4, 8),
        "pancreas": (5, 9),
        "colon": (6, 10),
        "liver tumor": (7,),
        "kidney tumor": (8,),
        "pancreas tumor": (9,),
        "colon tumor": (10,),
        "aorta": (11,),
        "inferior vena cava": (12,),
        "stomach": (13,),
        "gallbladder": (14,),
    }
)
# Values labelled after the first phantom series were written: a folder whose dataset.json does not list them
# leaves them unannotated (their structures painted but unlabelled there, so never an absent-structure prompt).
PHANTOM_LATER_VALUES: tuple[int, ...] = (11, 12, 13, 14)


def phantom_targets(labels: Mapping[str, str]) -> dict[str, tuple[int, ...]]:
    """The targets a phantom folder annotates, from its dataset.json ``labels`` (``{"value": name}``): every
    target but those using a value of :data:`PHANTOM_LATER_VALUES` the folder does not list (a series written
    before those structures were labelled)."""
    listed = {int(v) for v in labels if str(v).isdigit()}
    return {
        name: values
        for name, values in PHANTOM_TARGETS.items()
        if all(v in listed or v not in PHANTOM_LATER_VALUES for v in values)
    }


# Medical Segmentation Decathlon tasks (labels as in each task's dataset.json).
MSD_TARGETS: Mapping[str, Mapping[str, tuple[int, ...]]] = MappingProxyType(
    {
        "Task03_Liver": {"liver": (1, 2), "liver tumor": (2,)},
        "Task07_Pancreas": {"pancreas": (1, 2), "pancreas tumor": (2,)},
        "Task10_Colon": {"colon tumor": (1,)},
    }
)

# KiTS19: 1 kidney, 2 tumour. KiTS21/23: 1 kidney, 2 tumour, 3 cyst.
KITS19_TARGETS: Mapping[str, tuple[int, ...]] = MappingProxyType({"kidney": (1, 2), "kidney tumor": (2,)})
KITS21_TARGETS: Mapping[str, tuple[int, ...]] = MappingProxyType(
    {"kidney": (1, 2, 3), "kidney tumor": (2,), "kidney cyst": (3,)}
)

# Free-text MSD label names (dataset.json "labels") mapped to vocabulary names, for tasks not listed above.
MSD_NAME_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "liver": "liver",
        "cancer": "tumor",
        "tumour": "tumor",
        "tumor": "tumor",
        "pancreas": "pancreas",
        "colon cancer primaries": "colon tumor",
        "spleen": "spleen",
        "kidney": "kidney",
    }
)


def targets_from_label_names(names: Mapping[int, str]) -> dict[str, tuple[int, ...]]:
    """Targets of a label map whose values carry free names (MONAI Label ``label_info``: ``{idx: name}``).

    Each name is its own target; an organ also covers the lesions named after it ("liver" includes the value of
    "liver tumor"), as in the MSD and phantom maps above. Names are matched without case and written in lower case,
    except the vocabulary's own names, which keep its spelling ("t12 vertebra" -> "T12 vertebra").
    """
    spelling = {entry.name.lower(): entry.name for entry in PromptVocabulary.load().entries}
    cleaned: dict[int, str] = {}
    for value, name in names.items():
        key = str(name).strip().lower()
        if int(value) != 0 and key:
            cleaned[int(value)] = spelling.get(key, key)
    targets: dict[str, set[int]] = {}
    for value, name in cleaned.items():
        targets.setdefault(name, set()).add(value)
    for value, name in cleaned.items():
        for suffix in (" tumor", " tumour", " cyst", " lesion"):
            organ = name[: -len(suffix)] if name.endswith(suffix) else None
            if organ and organ in targets:
                targets[organ].add(value)
    return {name: tuple(sorted(values)) for name, values in targets.items()}
