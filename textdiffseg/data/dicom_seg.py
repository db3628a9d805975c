"""Integer label maps <-> DICOM-SEG, with pydicom-seg (installed with MONAI Label; no dcmqi binary, no download).

A label map whose voxel values are segment numbers is written as one binary-segmentation DICOM-SEG instance that
references its source CT series; segment ``v`` is labelled with the name given for value ``v`` (a prompt or a
``label_info`` name). Reading gives the label map back on the SEG's own grid (the source series' grid) and
``{segment number: SegmentLabel}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pydicom_seg
import SimpleITK as sitk  # noqa: N813 - the name SimpleITK documents
from pydicom.uid import generate_uid

# SNOMED CT "Anatomical structure" / "Organ": generic codes; the segment's own name is its SegmentLabel.
_CATEGORY = {"CodeValue": "123037004", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Anatomical Structure"}
_TYPE = {"CodeValue": "113343008", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Organ"}


@dataclass(frozen=True)
class SegmentationRead:
    """A decoded DICOM-SEG: the label map, segment names and which series it annotates."""

    image: sitk.Image  # integer label map, values = segment numbers
    segments: dict[int, str]  # segment number -> SegmentLabel
    referenced_series_uid: str


def _color(index: int) -> list[int]:
    """A distinct display colour per segment number."""
    rng = np.random.default_rng(index)
    return [int(v) for v in rng.integers(40, 256, size=3)]


def _template(segments: Mapping[int, str], series_description: str, algorithm: str) -> pydicom.Dataset:
    """A pydicom-seg template (dcmqi meta-info layout) with one entry per segment number."""
    attributes = [
        {
            "labelID": int(value),
            "SegmentLabel": name[:64],
            "SegmentDescription": name[:64],
            "SegmentAlgorithmType": "SEMIAUTOMATIC",
            "SegmentAlgorithmName": algorithm[:64],
            "SegmentedPropertyCategoryCodeSequence": dict(_CATEGORY),
            "SegmentedPropertyTypeCodeSequence": dict(_TYPE),
            "recommendedDisplayRGBValue": _color(int(value)),
        }
        for value, name in sorted(segments.items())
    ]
    meta = {
        "ContentCreatorName": "TextDiffSeg",
        "ClinicalTrialSeriesID": "Session1",
        "ClinicalTrialTimePointID": "1",
        "SeriesDescription": series_description[:64],
        "SeriesNumber": "300",
        "InstanceNumber": "1",
        "segmentAttributes": [attributes],
        "ContentLabel": "SEGMENTATION",
        "ContentDescription": "TextDiffSeg segmentation",
        "ClinicalTrialCoordinatingCenterName": "TextDiffSeg",
        "BodyPartExamined": "",
    }
    return pydicom_seg.template.from_dcmqi_metainfo(meta)


def source_datasets(series_dir: Path) -> list[pydicom.Dataset]:
    """Headers of the CT slices in ``series_dir`` (every readable DICOM file; pixels are not loaded)."""
    datasets = []
    for path in sorted(p for p in series_dir.iterdir() if p.is_file()):
        try:
            datasets.append(pydicom.dcmread(str(path), stop_before_pixels=True))
        except pydicom.errors.InvalidDicomError:
            continue
    if not datasets:
        raise FileNotFoundError(f"no DICOM files in {series_dir}")
    return datasets


def write_dicom_seg(
    label_path: Path,
    series_dir: Path,
    segments: Mapping[int, str],
    out_path: Path,
    series_description: str = "TextDiffSeg",
    algorithm: str = "TextDiffSeg",
) -> str:
    """Write the label map ``label_path`` (NIfTI/NRRD, on the series' grid) as a DICOM-SEG of the CT in ``series_dir``.

    ``segments`` names label values; values present in the map but not named become ``"label <v>"``; named values
    that are absent are dropped. Returns the new SEG's SeriesInstanceUID. Raises ``ValueError`` for an empty map.
    """
    mask = sitk.Cast(sitk.ReadImage(str(label_path)), sitk.sitkUInt16)
    present = [int(v) for v in np.unique(sitk.GetArrayViewFromImage(mask)) if v != 0]
    if not present:
        raise ValueError(f"{label_path}: the label map is empty, nothing to store as DICOM-SEG")
    names = {v: str(segments.get(v) or f"label {v}") for v in present}
    writer = pydicom_seg.MultiClassWriter(
        template=_template(names, series_description, algorithm),
        inplane_cropping=False,
        skip_empty_slices=False,
        skip_missing_segment=False,
    )
    dataset = writer.write(mask, source_datasets(series_dir))
    dataset.SeriesInstanceUID = generate_uid()
    dataset.SOPInstanceUID = generate_uid()
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    out_path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(str(out_path))
    return str(dataset.SeriesInstanceUID)


def read_dicom_seg(path: Path) -> SegmentationRead:
    """Decode a (non-overlapping, binary) DICOM-SEG file into a label map and its segment names."""
    dataset = pydicom.dcmread(str(path))
    if getattr(dataset, "Modality", "") != "SEG":
        raise ValueError(f"{path} is not a DICOM-SEG (Modality {getattr(dataset, 'Modality', '?')!r})")
    result = pydicom_seg.MultiClassReader().read(dataset)
    segments = {int(item.SegmentNumber): str(item.SegmentLabel) for item in dataset.SegmentSequence}
    return SegmentationRead(result.image, segments, str(result.referenced_series_uid))


def resample_to(label: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """``label`` on the grid of ``reference`` (nearest neighbour, 0 outside): SEGs may cover only some slices."""
    return sitk.Resample(label, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
