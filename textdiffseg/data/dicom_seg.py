"""Integer label maps <-> DICOM-SEG, with pydicom-seg (installed with MONAI Label; no dcmqi binary, no download).

Writing: a label map becomes one binary DICOM-SEG instance of its CT series, one segment per value present
(numbered 1, 2, ... as DICOM requires), labelled with the name given for that value and coded as an organ or a lesion
(:mod:`textdiffseg.data.dicom_codes`); ``SegmentAlgorithmType`` is ``MANUAL`` for labels an annotator submitted and
``AUTOMATIC`` (with ``SegmentAlgorithmName``) for model output. pydicom-seg gives every SEG a new Frame of Reference
UID (razorx89/pydicom-seg#48); here it is the CT's, and the written instance is checked against the CT slices
(:func:`geometry_problems`) before it is saved.

Reading: every segment is its own binary mask (segments may overlap: pydicom-seg's ``SegmentReader``, not its
multi-class reader, which refuses overlaps), with its label, algorithm type and codes. :func:`training_target` turns
the SEGs of one CT into the one label map training reads.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import pydicom_seg
import SimpleITK as sitk  # noqa: N813 - the name SimpleITK documents
from pydicom.uid import generate_uid

from textdiffseg.data.dicom_codes import SegmentCodes, codes_for, segment_codes, structure_name
from textdiffseg.data.vocabulary import PromptVocabulary

ALGORITHM_TYPES = ("MANUAL", "SEMIAUTOMATIC", "AUTOMATIC")  # also the preference order for training targets
POSITION_TOLERANCE_MM = 1e-3


@dataclass(frozen=True)
class Segment:
    """One segment of a DICOM-SEG: its description and its binary mask on the SEG's grid."""

    number: int
    label: str
    algorithm_type: str
    algorithm_name: str
    codes: SegmentCodes
    mask: sitk.Image = field(repr=False)  # uint8, 1 inside


@dataclass(frozen=True)
class SegmentationRead:
    """A decoded DICOM-SEG instance."""

    series_uid: str
    referenced_series_uid: str
    frame_of_reference_uid: str
    created: str  # "YYYYMMDDHHMMSS.ffffff" from SeriesDate/Time (else ContentDate/Time): orders the SEGs of a CT
    segments: list[Segment]


def _color(index: int) -> list[int]:
    """A distinct display colour per segment number."""
    rng = np.random.default_rng(index)
    return [int(v) for v in rng.integers(40, 256, size=3)]


def _template(
    segments: Mapping[int, str], series_description: str, algorithm_type: str, algorithm_name: str
) -> pydicom.Dataset:
    """A pydicom-seg template (dcmqi meta-info layout) with one entry per segment number."""
    attributes = []
    for value, name in sorted(segments.items()):
        attribute = {
            "labelID": int(value),
            "SegmentLabel": name[:64],
            "SegmentDescription": name[:64],
            "SegmentAlgorithmType": algorithm_type,
            "recommendedDisplayRGBValue": _color(int(value)),
            **codes_for(name).as_dcmqi(),
        }
        if algorithm_type != "MANUAL":
            attribute["SegmentAlgorithmName"] = algorithm_name[:64]
        attributes.append(attribute)
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


def _one(values: set[str], what: str) -> str:
    if len(values) != 1:
        raise ValueError(f"the CT slices have {len(values)} {what}s")
    return next(iter(values))


def geometry_problems(seg: pydicom.Dataset, sources: Sequence[pydicom.Dataset]) -> list[str]:
    """What does not match between a SEG and its CT slices (empty: it lies on them exactly).

    Checked: Frame of Reference UID, referenced series and instances, rows/columns, pixel spacing, orientation, and
    each frame's position against the position of the CT slice it is derived from.
    """
    problems = []
    by_uid = {str(s.SOPInstanceUID): s for s in sources}
    series = {str(s.SeriesInstanceUID) for s in sources}
    if str(seg.get("FrameOfReferenceUID", "")) not in {str(s.FrameOfReferenceUID) for s in sources}:
        problems.append(f"FrameOfReferenceUID {seg.get('FrameOfReferenceUID')} is not the CT's")
    referenced = [str(item.SeriesInstanceUID) for item in seg.get("ReferencedSeriesSequence", [])]
    if referenced != sorted(series):
        problems.append(f"ReferencedSeriesSequence {referenced} is not the CT series {sorted(series)}")
    first = sources[0]
    if (int(seg.Rows), int(seg.Columns)) != (int(first.Rows), int(first.Columns)):
        problems.append(f"{seg.Rows}x{seg.Columns} pixels, the CT has {first.Rows}x{first.Columns}")
    shared = seg.SharedFunctionalGroupsSequence[0]
    spacing = np.array([float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing])
    if not np.allclose(spacing, np.array([float(v) for v in first.PixelSpacing]), atol=1e-4):
        problems.append(f"pixel spacing {spacing.tolist()} differs from the CT's {list(first.PixelSpacing)}")
    orientation = np.array([float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient])
    if not np.allclose(orientation, np.array([float(v) for v in first.ImageOrientationPatient]), atol=1e-4):
        problems.append(f"orientation {orientation.tolist()} differs from the CT's")
    for number, frame in enumerate(seg.PerFrameFunctionalGroupsSequence, start=1):
        position = np.array([float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient])
        derived = [
            str(image.ReferencedSOPInstanceUID)
            for derivation in frame.get("DerivationImageSequence", [])
            for image in derivation.get("SourceImageSequence", [])
        ]
        if not derived or any(uid not in by_uid for uid in derived):
            problems.append(f"frame {number} does not reference an instance of the CT series")
            continue
        expected = np.array([float(v) for v in by_uid[derived[0]].ImagePositionPatient])
        if not np.allclose(position, expected, atol=POSITION_TOLERANCE_MM):
            problems.append(f"frame {number} at {position.tolist()}, its CT slice at {expected.tolist()}")
    return problems[:10]


class EmptyLabelError(ValueError):
    """A label map without a single labelled voxel: the client's request, not the server, is at fault."""

    http_status = 400  # read by ``textdiffseg_server.errors.error_answer``


def write_dicom_seg(
    label_path: Path,
    series_dir: Path,
    segments: Mapping[int, str],
    out_path: Path,
    series_description: str = "TextDiffSeg",
    algorithm_type: str = "MANUAL",
    algorithm_name: str = "TextDiffSeg",
) -> str:
    """Write the label map ``label_path`` (NIfTI/NRRD, on the series' grid) as a DICOM-SEG of the CT in ``series_dir``.

    ``segments`` names label values; values present in the map but not named become ``"label <v>"``; named values
    that are absent are dropped. The present values, ascending, become segments 1, 2, ... (DICOM numbers segments
    consecutively; a segment is known by its label and codes). ``algorithm_type``: ``MANUAL`` (a submitted label),
    ``SEMIAUTOMATIC`` or ``AUTOMATIC`` (model output, named ``algorithm_name``). Returns the new SEG's
    SeriesInstanceUID. Raises ``ValueError`` for an empty map or a SEG that would not lie on the CT
    (:func:`geometry_problems`).
    """
    if algorithm_type not in ALGORITHM_TYPES:
        raise ValueError(f"algorithm_type must be one of {ALGORITHM_TYPES}, not {algorithm_type!r}")
    mask = sitk.Cast(sitk.ReadImage(str(label_path)), sitk.sitkUInt16)
    present = [int(v) for v in np.unique(sitk.GetArrayViewFromImage(mask)) if v != 0]
    if not present:
        raise EmptyLabelError("the label map is empty: nothing to store as DICOM-SEG (label at least one voxel)")
    # DICOM numbers segments 1, 2, ... (PS3.3 C.8.20.2; highdicom refuses gaps): value present[k] is segment k + 1
    numbers = np.zeros(max(present) + 1, np.uint16)
    numbers[present] = np.arange(1, len(present) + 1)
    renumbered = sitk.GetImageFromArray(numbers[sitk.GetArrayViewFromImage(mask)])
    renumbered.CopyInformation(mask)
    names = {k: str(segments.get(v) or f"label {v}") for k, v in enumerate(present, start=1)}
    sources = source_datasets(series_dir)
    writer = pydicom_seg.MultiClassWriter(
        template=_template(names, series_description, algorithm_type, algorithm_name),
        inplane_cropping=False,
        skip_empty_slices=True,
        skip_missing_segment=False,
    )
    frame_of_reference = _one({str(s.FrameOfReferenceUID) for s in sources}, "Frame of Reference UID")
    # pydicom-seg shares data elements with the first source and then gives the SEG a new Frame of Reference UID,
    # which changes that source too (razorx89/pydicom-seg#48): it writes from copies, and the CT's UID is put back.
    dataset = writer.write(renumbered, copy.deepcopy(sources))
    dataset.FrameOfReferenceUID = frame_of_reference
    if algorithm_type == "MANUAL":
        for item in dataset.SegmentSequence:
            if "SegmentAlgorithmName" in item:
                del item.SegmentAlgorithmName
    dataset.SeriesInstanceUID = generate_uid()
    dataset.SOPInstanceUID = generate_uid()
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    problems = geometry_problems(dataset, sources)
    if problems:
        raise ValueError(f"the DICOM-SEG would not lie on its CT series: {'; '.join(problems)}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(str(out_path))
    return str(dataset.SeriesInstanceUID)


def _created(dataset: pydicom.Dataset) -> str:
    for date, time in (("SeriesDate", "SeriesTime"), ("ContentDate", "ContentTime")):
        if dataset.get(date):
            whole, _, fraction = str(dataset.get(time) or "").partition(".")
            return f"{dataset.get(date)}{whole:0<6}.{fraction:0<6}"
    return ""


def read_dicom_seg(path: Path) -> SegmentationRead:
    """Decode a binary DICOM-SEG file: every segment as its own mask (overlaps allowed).

    Raises ``ValueError`` (or pydicom's errors) for a file that is not a readable binary/fractional DICOM-SEG.
    """
    dataset = pydicom.dcmread(str(path))
    if getattr(dataset, "Modality", "") != "SEG":
        raise ValueError(f"{path} is not a DICOM-SEG (Modality {getattr(dataset, 'Modality', '?')!r})")
    result = pydicom_seg.SegmentReader().read(dataset)
    segments = []
    for item in dataset.SegmentSequence:
        number = int(item.SegmentNumber)
        if number not in result.available_segments:
            continue  # described but without frames
        mask = sitk.Cast(result.segment_image(number) > 0, sitk.sitkUInt8)
        segments.append(
            Segment(
                number,
                str(item.get("SegmentLabel", "")),
                str(item.get("SegmentAlgorithmType", "")).upper(),
                str(item.get("SegmentAlgorithmName", "")),
                segment_codes(item),
                mask,
            )
        )
    return SegmentationRead(
        str(dataset.SeriesInstanceUID),
        str(result.referenced_series_uid),
        str(dataset.get("FrameOfReferenceUID", "")),
        _created(dataset),
        segments,
    )


def resample_to(label: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """``label`` on the grid of ``reference`` (nearest neighbour, 0 outside): SEGs may cover only some slices."""
    return sitk.Resample(label, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)


@dataclass(frozen=True)
class TrainingTarget:
    """The label map training reads for one CT, built from its SEGs."""

    label: sitk.Image  # on the CT's grid; values 1..n
    names: dict[int, str]  # value -> structure (vocabulary name or free text)
    notes: list[str]  # which segment became which value, which were left out and why


def _rank(segment: Segment) -> int:
    kind = segment.algorithm_type
    return ALGORITHM_TYPES.index(kind) if kind in ALGORITHM_TYPES else len(ALGORITHM_TYPES)


def training_target(
    reads: Sequence[SegmentationRead], reference: sitk.Image, vocabulary: PromptVocabulary
) -> TrainingTarget | None:
    """One label map from all SEGs of a CT (``None`` when no segment has a voxel on it).

    Each segment stands for a structure (:func:`textdiffseg.data.dicom_codes.structure_name`). Per structure one
    segment is kept: from the newest SEG (a saved correction replaces what was there), then ``MANUAL`` over
    ``SEMIAUTOMATIC`` over ``AUTOMATIC``, then the lowest segment number. Kept segments are painted largest first,
    so where two overlap the voxel belongs to the smaller one (a tumour stays inside its organ; training's "liver"
    target covers the value of "liver tumor" anyway). Values are 1..n in structure-name order.
    """
    order = sorted(range(len(reads)), key=lambda i: (reads[i].created, i), reverse=True)  # newest first
    best: dict[str, tuple[tuple, Segment, SegmentationRead]] = {}
    notes = []
    for age, index in enumerate(order):
        read = reads[index]
        for segment in read.segments:
            name = structure_name(segment.label, segment.codes, vocabulary)
            key = (age, _rank(segment), segment.number)
            if name not in best or key < best[name][0]:
                if name in best:
                    _, old, old_read = best[name]
                    notes.append(f"SEG {old_read.series_uid} segment {old.number} ({name}) left out: a preferred one")
                best[name] = (key, segment, read)
            else:
                notes.append(f"SEG {read.series_uid} segment {segment.number} ({name}) left out: a preferred one")
    masks = {}
    for name, (_, segment, read) in best.items():
        on_grid = resample_to(segment.mask, reference)
        voxels = int(sitk.GetArrayViewFromImage(on_grid).sum())
        if voxels == 0:
            notes.append(f"SEG {read.series_uid} segment {segment.number} ({name}) left out: no voxel on the CT")
            continue
        masks[name] = (voxels, on_grid, segment, read)
    if not masks:
        return None
    values = {name: value for value, name in enumerate(sorted(masks), start=1)}
    shape = sitk.GetArrayViewFromImage(reference).shape
    label = np.zeros(shape, np.uint8 if len(values) < 256 else np.uint16)
    for name, (_, on_grid, segment, read) in sorted(masks.items(), key=lambda item: -item[1][0]):
        label[sitk.GetArrayViewFromImage(on_grid) > 0] = values[name]
        notes.append(
            f"SEG {read.series_uid} segment {segment.number} '{segment.label}' ({segment.algorithm_type or '?'}) "
            f"-> {values[name]} {name}"
        )
    image = sitk.GetImageFromArray(label)
    image.CopyInformation(reference)
    return TrainingTarget(image, {value: name for name, value in values.items()}, notes)
