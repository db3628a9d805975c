"""SNOMED CT codes of DICOM-SEG segments: structure name -> codes (writing) and codes -> structure name (reading).

Written segments follow DICOM's segmentation property conventions (CID 7150/7151, as 3D Slicer and dcmqi write
them):

* an organ or other anatomy: category "Anatomical Structure" (SCT 123037004), type the structure's own code (the
  laterality, for "left kidney", as a type modifier: SCT 7771000 Left / 24028007 Right); anatomy without a code here
  gets the generic type "Anatomical structure" (SCT 91723000), its name staying in SegmentLabel;
* a tumour: category "Morphologically Altered Structure" (SCT 49755003), type "Neoplasm" (SCT 108369006), the organ
  as AnatomicRegionSequence; a cyst: the same with type "Cyst" (SCT 367643001).

Codes come from pydicom's DICOM code dictionary (``pydicom.sr.codedict``), by the attribute names in
:data:`STRUCTURE_CODES`.

Reading maps a segment to a prompt of the vocabulary, first match wins: its SegmentLabel (a vocabulary name or
synonym, "GTV liver" is not one); its type code (+ modifier) from the table; a lesion type (Neoplasm, "Neoplasm,
Primary" including the retired SNOMED RT ``M-80003``, Mass, Cyst, or a meaning naming a tumour) in a coded anatomic
region -> "<organ> tumor" / "<organ> cyst"; its type's meaning as a vocabulary synonym; else the SegmentLabel itself
(free text).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pydicom
from pydicom.sr.codedict import codes

from textdiffseg.data.vocabulary import PromptVocabulary


@dataclass(frozen=True)
class Code:
    """One coded concept (``CodeValue``, ``CodingSchemeDesignator``, ``CodeMeaning``)."""

    value: str
    scheme: str
    meaning: str

    def as_dcmqi(self) -> dict[str, str]:
        """The dcmqi/pydicom-seg template form."""
        return {"CodeValue": self.value, "CodingSchemeDesignator": self.scheme, "CodeMeaning": self.meaning}

    @classmethod
    def from_item(cls, item: pydicom.Dataset) -> Code:
        """From a code sequence item."""
        return cls(
            str(item.get("CodeValue", "")),
            str(item.get("CodingSchemeDesignator", "")),
            str(item.get("CodeMeaning", "")),
        )

    @property
    def key(self) -> tuple[str, str]:
        return self.value, self.scheme


def _sct(name: str) -> Code:
    code = getattr(codes.SCT, name)
    return Code(str(code.value), str(code.scheme_designator), str(code.meaning))


ANATOMICAL_STRUCTURE = Code("123037004", "SCT", "Anatomical Structure")
GENERIC_ANATOMY = Code("91723000", "SCT", "Anatomical structure")
ALTERED_STRUCTURE = Code("49755003", "SCT", "Morphologically Altered Structure")
NEOPLASM = Code("108369006", "SCT", "Neoplasm")
CYST = Code("367643001", "SCT", "Cyst")
LEFT = Code("7771000", "SCT", "Left")
RIGHT = Code("24028007", "SCT", "Right")
# Lesion types a segment of another tool may carry (SNOMED RT M-80003 = "Neoplasm, Primary", as in TCIA's SEGs).
LESION_TYPES = {NEOPLASM.key, ("86049000", "SCT"), ("M-80003", "SRT"), ("M-80000", "SRT"), ("4147007", "SCT")}
CYST_TYPES = {CYST.key, ("441457006", "SCT")}
LESION_WORDS = ("neoplasm", "tumor", "tumour", "mass", "carcinoma", "cancer", "lesion", "metasta", "nodule")

# vocabulary name -> (pydicom.sr.codedict SCT attribute, laterality modifier or None)
STRUCTURE_CODES: dict[str, tuple[str, Code | None]] = {
    "liver": ("Liver", None),
    "spleen": ("Spleen", None),
    "left kidney": ("Kidney", LEFT),
    "right kidney": ("Kidney", RIGHT),
    "kidney": ("Kidney", None),
    "pancreas": ("Pancreas", None),
    "colon": ("Colon", None),
    "stomach": ("Stomach", None),
    "gallbladder": ("Gallbladder", None),
    "urinary bladder": ("UrinaryBladderStructure", None),
    "small bowel": ("SmallIntestine", None),
    "duodenum": ("Duodenum", None),
    "adrenal gland": ("AdrenalGland", None),
    "prostate": ("Prostate", None),
    "aorta": ("Aorta", None),
    "inferior vena cava": ("InferiorVenaCava", None),
    "portal vein": ("PortalVein", None),
    "iliac artery": ("IliacArtery", None),
    "iliac vein": ("IliacVeinStructure", None),
    "celiac trunk": ("StructureOfCeliacArtery", None),
    "superior mesenteric artery": ("SuperiorMesentericArtery", None),
    "heart": ("Heart", None),
    "pulmonary artery": ("PulmonaryArtery", None),
    "lungs": ("Lung", None),
    "left lung": ("Lung", LEFT),
    "right lung": ("Lung", RIGHT),
    "left upper lobe": ("UpperLobeOfLung", LEFT),
    "left lower lobe": ("LowerLobeOfLung", LEFT),
    "right upper lobe": ("UpperLobeOfLung", RIGHT),
    "right middle lobe": ("MiddleLobeOfRightLung", None),
    "right lower lobe": ("LowerLobeOfLung", RIGHT),
    "ribs": ("Rib", None),
    "spine": ("Spine", None),
    "cervical spine": ("CervicalSpine", None),
    "thoracic spine": ("ThoracicSpine", None),
    "lumbar spine": ("LumbarSpine", None),
    "sacrum": ("Sacrum", None),
    "femur": ("Femur", None),
    "spinal cord": ("SpinalCord", None),
    "brachiocephalic trunk": ("BrachiocephalicTrunk", None),
    "left subclavian artery": ("LeftSubclavianArtery", None),
    "left common carotid artery": ("LeftCommonCarotidArtery", None),
}


@dataclass(frozen=True)
class SegmentCodes:
    """The coded description of one segment."""

    category: Code
    type: Code
    type_modifier: Code | None = None
    region: Code | None = None
    region_modifier: Code | None = None

    @property
    def is_lesion(self) -> bool:
        return self.category == ALTERED_STRUCTURE

    def as_dcmqi(self) -> dict[str, dict[str, str]]:
        """The code entries of a dcmqi segment attribute (pydicom-seg template)."""
        out = {
            "SegmentedPropertyCategoryCodeSequence": self.category.as_dcmqi(),
            "SegmentedPropertyTypeCodeSequence": self.type.as_dcmqi(),
        }
        if self.type_modifier:
            out["SegmentedPropertyTypeModifierCodeSequence"] = self.type_modifier.as_dcmqi()
        if self.region:
            out["AnatomicRegionSequence"] = self.region.as_dcmqi()
        if self.region_modifier:
            out["AnatomicRegionModifierSequence"] = self.region_modifier.as_dcmqi()
        return out


# organ words of lesion names ("lung tumor") that are not themselves vocabulary names
ORGAN_WORDS = {"lung": "lungs", "bladder": "urinary bladder", "bowel": "small bowel"}


def _anatomy(name: str) -> tuple[Code, Code | None] | None:
    key = name.strip().lower()
    entry = STRUCTURE_CODES.get(ORGAN_WORDS.get(key, key))
    return None if entry is None else (_sct(entry[0]), entry[1])


def _lesion_parts(name: str) -> tuple[str, Code] | None:
    """("liver", NEOPLASM) for "liver tumor"; None when the name is not "<organ> <lesion word>"."""
    words = name.strip().lower()
    for suffix, kind in ((" tumor", NEOPLASM), (" tumour", NEOPLASM), (" lesion", NEOPLASM), (" cyst", CYST)):
        if words.endswith(suffix):
            return words[: -len(suffix)], kind
    return None


def codes_for(name: str) -> SegmentCodes:
    """Category/type (and region) codes of a structure name (see the module docstring)."""
    lesion = _lesion_parts(name)
    if lesion is not None:
        organ, kind = lesion
        anatomy = _anatomy(organ)
        region, modifier = anatomy if anatomy else (None, None)
        return SegmentCodes(ALTERED_STRUCTURE, kind, region=region, region_modifier=modifier)
    anatomy = _anatomy(name)
    if anatomy is None:
        return SegmentCodes(ANATOMICAL_STRUCTURE, GENERIC_ANATOMY)
    return SegmentCodes(ANATOMICAL_STRUCTURE, anatomy[0], type_modifier=anatomy[1])


def _first(sequence: Iterable[pydicom.Dataset] | None) -> Code | None:
    items = list(sequence or [])
    return Code.from_item(items[0]) if items else None


def segment_codes(item: pydicom.Dataset) -> SegmentCodes:
    """The codes of a SegmentSequence item (absent sequences: an empty code)."""
    empty = Code("", "", "")
    return SegmentCodes(
        _first(item.get("SegmentedPropertyCategoryCodeSequence")) or empty,
        _first(item.get("SegmentedPropertyTypeCodeSequence")) or empty,
        _first(item.get("SegmentedPropertyTypeModifierCodeSequence")),
        _first(item.get("AnatomicRegionSequence")),
        _first(item.get("AnatomicRegionModifierSequence")),
    )


def _by_code(code: Code | None, modifier: Code | None) -> str | None:
    if code is None:
        return None
    for name, (attribute, laterality) in STRUCTURE_CODES.items():
        if _sct(attribute).key == code.key and (laterality.key if laterality else None) == (
            modifier.key if modifier else None
        ):
            return name
    return None


def _known(vocabulary: PromptVocabulary, text: str | None) -> str | None:
    return vocabulary.canonical(text) if text else None


def structure_name(label: str, described: SegmentCodes, vocabulary: PromptVocabulary) -> str:
    """The prompt (vocabulary name, else free text) a segment stands for: rules in the module docstring."""
    found = _known(vocabulary, label) or _by_code(described.type, described.type_modifier)
    if found:
        return found
    meaning = described.type.meaning.lower()
    lesion = described.type.key in LESION_TYPES or any(word in meaning for word in LESION_WORDS)
    cyst = described.type.key in CYST_TYPES or "cyst" in meaning
    if (lesion or cyst) and described.region is not None:
        organs = (
            described.region.meaning,
            _by_code(described.region, described.region_modifier),
            _known(vocabulary, described.region.meaning),
        )
        for organ in filter(None, organs):
            found = vocabulary.canonical(f"{organ} {'cyst' if cyst else 'tumor'}")
            if found:
                return found
    by_meaning = _known(vocabulary, described.type.meaning)
    if by_meaning and not (lesion or cyst):
        return by_meaning
    return " ".join(label.split()).lower() or described.type.meaning.lower() or "segment"
