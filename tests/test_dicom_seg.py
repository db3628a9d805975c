"""DICOM-SEG written and read by ``textdiffseg.data.dicom_seg``, checked with highdicom and against the CT slices.

A small CT is exported as a DICOM series (``dicom_export``); a label map on its grid is written as a SEG and read
back with highdicom (an independent reader: it parses the segment descriptions, codes and frame references) and by
the module itself. Overlapping segments (which pydicom-seg's multi-class reader refuses) are made with highdicom.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk  # noqa: N813
from pydicom.sr.codedict import codes

from textdiffseg.data.dicom_codes import ALTERED_STRUCTURE, ANATOMICAL_STRUCTURE, LEFT, NEOPLASM, Code
from textdiffseg.data.dicom_export import export_volume
from textdiffseg.data.dicom_seg import (
    geometry_problems,
    read_dicom_seg,
    resample_to,
    source_datasets,
    training_target,
    write_dicom_seg,
)
from textdiffseg.data.vocabulary import PromptVocabulary

VOCABULARY = PromptVocabulary.load()


@dataclass
class Study:
    folder: Path  # the CT series
    grid: Path  # the CT as SimpleITK reads the series (NIfTI)
    sources: list[pydicom.Dataset]


@pytest.fixture
def study(tmp_path: Path) -> Study:
    affine = np.array([[-1.5, 0, 0, 10.0], [0, -1.5, 0, 20.0], [0, 0, 2.0, -5.0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(np.zeros((8, 6, 5), np.int16), affine), tmp_path / "ct.nii.gz")
    exported = export_volume(tmp_path / "ct.nii.gz", tmp_path / "dcm")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(exported.folder)))
    sitk.WriteImage(reader.Execute(), str(tmp_path / "grid.nii.gz"))
    return Study(exported.folder, tmp_path / "grid.nii.gz", source_datasets(exported.folder))


def _label(study: Study, path: Path, values: dict[int, tuple[slice, slice, slice]]) -> np.ndarray:
    grid = nib.load(study.grid)
    label = np.zeros(grid.shape, np.uint8)
    for value, box in values.items():
        label[box] = value
    nib.save(nib.Nifti1Image(label, grid.affine), path)
    return label


def _code(sequence: pydicom.Sequence) -> Code:
    return Code.from_item(sequence[0])


def test_written_seg_is_on_the_cts_frame_of_reference_with_organ_and_lesion_codes(study: Study, tmp_path: Path) -> None:
    boxes = {1: (slice(1, 5), slice(1, 4), slice(1, 4)), 8: (slice(2, 3), slice(2, 3), slice(2, 3)), 3: (5, 4, 3)}
    label = _label(study, tmp_path / "label.nii.gz", boxes)
    names = {1: "liver", 8: "liver tumor", 3: "left kidney", 2: "absent"}
    seg_uid = write_dicom_seg(tmp_path / "label.nii.gz", study.folder, names, tmp_path / "seg.dcm")

    dataset = pydicom.dcmread(str(tmp_path / "seg.dcm"))
    ct = study.sources[0]
    assert dataset.SeriesInstanceUID == seg_uid and dataset.FrameOfReferenceUID == ct.FrameOfReferenceUID
    assert (dataset.StudyInstanceUID, dataset.PatientID) == (ct.StudyInstanceUID, ct.PatientID)
    assert geometry_problems(dataset, study.sources) == []
    seg = hd.seg.Segmentation.from_dataset(dataset)  # an independent reader accepts it
    assert {uid for _, _, uid in seg.get_source_image_uids()} <= {s.SOPInstanceUID for s in study.sources}
    assert seg.get_segment_numbers() == [1, 2, 3]  # values 1, 3, 8 ascending: DICOM numbers segments from 1
    by_number = {int(s.SegmentNumber): s for s in dataset.SegmentSequence}
    liver, kidney, tumor = by_number[1], by_number[2], by_number[3]
    assert [liver.SegmentLabel, kidney.SegmentLabel, tumor.SegmentLabel] == ["liver", "left kidney", "liver tumor"]
    assert {s.SegmentAlgorithmType for s in by_number.values()} == {"MANUAL"}
    assert not any("SegmentAlgorithmName" in s for s in by_number.values())
    assert _code(liver.SegmentedPropertyCategoryCodeSequence) == ANATOMICAL_STRUCTURE
    assert _code(liver.SegmentedPropertyTypeCodeSequence).value == codes.SCT.Liver.value
    assert _code(kidney.SegmentedPropertyTypeModifierCodeSequence) == LEFT
    assert _code(tumor.SegmentedPropertyCategoryCodeSequence) == ALTERED_STRUCTURE
    assert _code(tumor.SegmentedPropertyTypeCodeSequence) == NEOPLASM
    assert _code(tumor.AnatomicRegionSequence).value == codes.SCT.Liver.value

    decoded = read_dicom_seg(tmp_path / "seg.dcm")
    assert decoded.referenced_series_uid == ct.SeriesInstanceUID
    reference = sitk.ReadImage(str(study.grid))
    values = {"liver": 1, "left kidney": 3, "liver tumor": 8}
    for segment in decoded.segments:  # each segment on the CT grid is exactly its value's voxels
        mask = sitk.GetArrayFromImage(resample_to(segment.mask, reference))
        np.testing.assert_array_equal(mask, (label == values[segment.label]).transpose(2, 1, 0))


def test_model_output_is_automatic_and_names_the_algorithm(study: Study, tmp_path: Path) -> None:
    _label(study, tmp_path / "label.nii.gz", {1: (slice(1, 5), slice(1, 4), slice(1, 4))})
    write_dicom_seg(
        tmp_path / "label.nii.gz", study.folder, {1: "liver"}, tmp_path / "seg.dcm", algorithm_type="AUTOMATIC"
    )
    (segment,) = pydicom.dcmread(str(tmp_path / "seg.dcm")).SegmentSequence
    assert (segment.SegmentAlgorithmType, segment.SegmentAlgorithmName) == ("AUTOMATIC", "TextDiffSeg")
    with pytest.raises(ValueError, match="algorithm_type"):
        write_dicom_seg(tmp_path / "label.nii.gz", study.folder, {}, tmp_path / "x.dcm", algorithm_type="GUESS")
    _label(study, tmp_path / "empty.nii.gz", {})
    with pytest.raises(ValueError, match="empty"):
        write_dicom_seg(tmp_path / "empty.nii.gz", study.folder, {}, tmp_path / "x.dcm")


def test_geometry_check_names_a_foreign_frame_of_reference_and_a_shifted_frame(study: Study, tmp_path: Path) -> None:
    _label(study, tmp_path / "label.nii.gz", {1: (slice(1, 5), slice(1, 4), slice(1, 4))})
    write_dicom_seg(tmp_path / "label.nii.gz", study.folder, {1: "liver"}, tmp_path / "seg.dcm")
    dataset = pydicom.dcmread(str(tmp_path / "seg.dcm"))
    dataset.FrameOfReferenceUID = pydicom.uid.generate_uid()  # what pydicom-seg alone writes
    position = dataset.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0]
    position.ImagePositionPatient = [float(v) + 2.0 for v in position.ImagePositionPatient]
    problems = geometry_problems(dataset, study.sources)
    assert any("FrameOfReferenceUID" in p for p in problems) and any(p.startswith("frame 1 at") for p in problems)


def _overlapping_seg(study: Study, path: Path, segments: list[tuple[str, str, Code, Code, np.ndarray]]) -> None:
    """A SEG (highdicom) whose segments overlap: (label, algorithm type, category, type, mask in (z, y, x))."""
    sources = [pydicom.dcmread(str(p)) for p in sorted(study.folder.iterdir())]
    sources.sort(key=lambda s: float(s.ImagePositionPatient[2]))
    descriptions = []
    for number, (label, kind, category, kind_code, _) in enumerate(segments, start=1):
        algorithm = None
        if kind != "MANUAL":
            algorithm = hd.AlgorithmIdentificationSequence("other tool", hd.sr.CodedConcept("123109", "DCM", "AI"), "1")
        descriptions.append(
            hd.seg.SegmentDescription(
                number,
                label,
                hd.sr.CodedConcept(category.value, category.scheme, category.meaning),
                hd.sr.CodedConcept(kind_code.value, kind_code.scheme, kind_code.meaning),
                kind,
                algorithm,
                anatomic_regions=[codes.SCT.Lung] if kind_code == NEOPLASM else None,
            )
        )
    pixels = np.stack([mask for *_, mask in segments], axis=-1).astype(np.uint8)  # (frames, rows, cols, segments)
    seg = hd.seg.Segmentation(
        sources,
        pixels,
        hd.seg.SegmentationTypeValues.BINARY,
        descriptions,
        hd.UID(),
        2,
        hd.UID(),
        1,
        "other vendor",
        "other model",
        "1",
        "1",
    )
    seg.save_as(str(path))


def test_overlapping_segments_are_read_one_by_one_and_become_one_target(study: Study, tmp_path: Path) -> None:
    reference = sitk.ReadImage(str(study.grid))
    shape = sitk.GetArrayViewFromImage(reference).shape  # (z, y, x)
    lung, manual, automatic = (np.zeros(shape, bool) for _ in range(3))
    lung[:, 1:5, 1:6] = True
    manual[1:3, 2:4, 2:4] = True
    automatic[1:4, 2:5, 2:5] = True  # the same tumour, drawn larger by another tool
    tumor = ("Neoplasm, Primary", Code("49755003", "SCT", "Morphologically Altered Structure"), NEOPLASM)
    _overlapping_seg(
        study,
        tmp_path / "seg.dcm",
        [
            ("GTV auto", "AUTOMATIC", tumor[1], tumor[2], automatic),
            ("GTV manual", "MANUAL", tumor[1], tumor[2], manual),
            ("Lungs", "MANUAL", ANATOMICAL_STRUCTURE, Code("39607008", "SCT", "Lung"), lung),
        ],
    )
    read = read_dicom_seg(tmp_path / "seg.dcm")
    assert [int(sitk.GetArrayViewFromImage(s.mask).sum()) for s in read.segments] == [
        automatic.sum(),
        manual.sum(),
        lung.sum(),
    ]
    target = training_target([read], reference, VOCABULARY)
    assert target is not None and target.names == {1: "lung tumor", 2: "lungs"}
    label = sitk.GetArrayFromImage(target.label)
    # the manual tumour is kept (not the automatic one), and inside the lungs the smaller segment wins
    np.testing.assert_array_equal(label == 1, manual)
    np.testing.assert_array_equal(label == 2, lung & ~manual)
    assert any("segment 1 (lung tumor) left out" in note for note in target.notes)


def test_a_newer_seg_replaces_a_structure_and_keeps_the_others(study: Study, tmp_path: Path) -> None:
    reference = sitk.ReadImage(str(study.grid))
    old = _label(study, tmp_path / "old.nii.gz", {1: (slice(1, 5), slice(1, 4), slice(1, 4)), 2: (6, 4, 3)})
    write_dicom_seg(tmp_path / "old.nii.gz", study.folder, {1: "liver", 2: "spleen"}, tmp_path / "old.dcm")
    new = _label(study, tmp_path / "new.nii.gz", {5: (slice(1, 3), slice(1, 3), slice(1, 3))})
    write_dicom_seg(tmp_path / "new.nii.gz", study.folder, {5: "liver"}, tmp_path / "new.dcm")
    reads = [read_dicom_seg(tmp_path / "new.dcm"), read_dicom_seg(tmp_path / "old.dcm")]
    assert reads[0].created >= reads[1].created
    target = training_target(reads, reference, VOCABULARY)
    assert target is not None and target.names == {1: "liver", 2: "spleen"}
    label = sitk.GetArrayFromImage(target.label).transpose(2, 1, 0)
    np.testing.assert_array_equal(label == 1, new == 5)
    np.testing.assert_array_equal(label == 2, old == 2)
