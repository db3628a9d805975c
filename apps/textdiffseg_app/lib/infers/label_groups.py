"""Groups of the vocabulary for OHIF's Class Prompts buttons (``/info`` -> ``models.textdiffseg.label_groups``).

The MONAI Label plugin of OHIF (bundled with MONAI Label 0.8.5) draws five hard-coded buttons ("Organs",
"Lung/Heart", "Vascular", "Bones", "Muscles") that tick lists of TotalSegmentator class names; most of them are not in
this vocabulary, so they ticked nothing. The server serves the plugin with those buttons drawn from this list instead
(``textdiffseg_server.ohif_plugin``): ``[[group, [names...]], ...]`` in this order, empty groups left out.
"""

from __future__ import annotations

from collections.abc import Iterable

from textdiffseg.data.dicom_codes import codes_for

GROUPS = ("Organs", "Chest", "Vessels", "Bones", "Lesions", "Other")
_KEYWORDS = {
    "Vessels": ("artery", "vein", "aorta", "vena cava", "trunk"),
    "Bones": ("rib", "spine", "vertebra", "sacrum", "hip bone", "femur", "bone"),
    "Chest": ("lung", "lobe", "heart", "trachea"),
}
ORGANS = frozenset(
    {"liver", "spleen", "left kidney", "right kidney", "kidney", "pancreas", "colon", "stomach", "gallbladder",
     "urinary bladder", "small bowel", "duodenum", "adrenal gland", "prostate", "esophagus"}
)  # fmt: skip


def group_of(name: str) -> str:
    """The button a structure name belongs under."""
    lowered = name.lower()
    if codes_for(lowered).is_lesion:
        return "Lesions"
    if lowered in ORGANS:
        return "Organs"
    for group, words in _KEYWORDS.items():
        if any(word in lowered for word in words):
            return group
    return "Other"


def label_groups(names: Iterable[str]) -> list[list[object]]:
    """``[[group, [names in vocabulary order]], ...]`` for the groups that have a name."""
    grouped: dict[str, list[str]] = {group: [] for group in GROUPS}
    for name in names:
        grouped[group_of(name)].append(name)
    return [[group, members] for group, members in grouped.items() if members]
