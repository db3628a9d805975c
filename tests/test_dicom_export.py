"""NIfTI -> DICOM CT export, checked by reading the files back with SimpleITK (GDCM); DICOM-SEG: test_dicom_seg.py.

SimpleITK is what MONAI Label's DICOMweb datastore uses to turn a downloaded series into the NIfTI the model sees,
so "world coordinates survive the round trip" here means the server's masks line up with the PACS series.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk  # noqa: N813

from textdiffseg.data.dicom_export import export_volume, hu_to_stored, main, slice_geometry


def _read_series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def _world_samples(img: nib.Nifti1Image, n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random voxel indices of ``img`` and their RAS world coordinates."""
    rng = np.random.default_rng(seed)
    ijk = np.stack([rng.integers(0, s, n) for s in img.shape], axis=1)
    return ijk, nib.affines.apply_affine(img.affine, ijk)


def _write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


@pytest.mark.parametrize(
    "affine",
    [
        # the phantom's own layout: voxel axes along RAS -x, -y, +z (= DICOM LPS +x, +y, +z)
        np.array([[-2.0, 0, 0, 30.0], [0, -1.5, 0, 40.0], [0, 0, 3.0, -20.0], [0, 0, 0, 1]]),
        # RAS-ordered voxels with a reversed slice axis: left/right and slice order must not flip
        np.array([[1.2, 0, 0, -15.0], [0, 0.8, 0, 7.5], [0, 0, -2.5, 60.0], [0, 0, 0, 1]]),
        # oblique (rotated about z by 30 degrees)
        np.array([[1.73205, -0.5, 0, 3.0], [1.0, 0.866025, 0, -4.0], [0, 0, 2.0, 5.0], [0, 0, 0, 1]]),
    ],
    ids=["phantom-lps", "ras-reversed-slices", "oblique"],
)
def test_series_reads_back_with_the_same_world_geometry_and_hu(tmp_path: Path, affine: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    hu = rng.integers(-1024, 1500, size=(7, 5, 4)).astype(np.int16)
    src = nib.load(_write_nifti(tmp_path / "ct.nii.gz", hu, affine))
    exported = export_volume(tmp_path / "ct.nii.gz", tmp_path / "dcm")
    assert len(exported.files) == 4
    sitk.WriteImage(_read_series(exported.folder), str(tmp_path / "back.nii.gz"))
    back = nib.load(tmp_path / "back.nii.gz")
    back_data = np.asarray(back.dataobj)
    # every sampled voxel is found at the same world point in the read-back volume, with the same HU
    ijk, world = _world_samples(src)
    back_ijk = np.rint(nib.affines.apply_affine(np.linalg.inv(back.affine), world)).astype(int)
    assert (back_ijk >= 0).all() and (back_ijk < np.array(back.shape)).all()
    np.testing.assert_array_equal(back_data[tuple(back_ijk.T)], hu[tuple(ijk.T)])
    assert sorted(np.abs(np.linalg.svd(back.affine[:3, :3])[1])) == pytest.approx(
        sorted(np.abs(np.linalg.svd(affine[:3, :3])[1])), abs=1e-3
    )


def test_slice_tags_name_the_case_and_encode_hu(tmp_path: Path) -> None:
    affine = np.array([[-0.8, 0, 0, 200.0], [0, -0.8, 0, 180.0], [0, 0, 2.5, -100.0], [0, 0, 0, 1]])
    hu = np.full((6, 4, 3), -1000, dtype=np.int16)
    hu[2, 1, 1] = 1200
    _write_nifti(tmp_path / "phantom_007.nii.gz", hu, affine)
    exported = export_volume(tmp_path / "phantom_007.nii.gz", tmp_path / "dcm")
    slices = [pydicom.dcmread(str(p)) for p in exported.files]
    first = slices[0]
    assert first.Modality == "CT" and first.PatientID == "phantom_007"
    assert "phantom_007" in first.StudyDescription
    assert (first.Rows, first.Columns) == (4, 6)
    assert [float(v) for v in first.PixelSpacing] == [0.8, 0.8] and float(first.SliceThickness) == 2.5
    # NIfTI RAS (-0.8 per i along x) is +0.8 per column along DICOM LPS x
    assert [float(v) for v in first.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert [float(v) for v in first.ImagePositionPatient] == [-200.0, -180.0, -100.0]
    assert [float(s.ImagePositionPatient[2]) for s in slices] == [-100.0, -97.5, -95.0]
    assert float(first.RescaleIntercept) == -1024 and float(first.RescaleSlope) == 1
    middle = slices[1]
    assert middle.pixel_array[1, 2] * float(middle.RescaleSlope) + float(middle.RescaleIntercept) == 1200
    assert len({s.SOPInstanceUID for s in slices}) == 3
    assert len({s.SeriesInstanceUID for s in slices}) == 1 and first.SeriesInstanceUID != first.StudyInstanceUID


def test_uids_are_stable_for_a_file_and_differ_between_files(tmp_path: Path) -> None:
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    _write_nifti(tmp_path / "a.nii.gz", np.zeros((3, 3, 2), np.int16), affine)
    _write_nifti(tmp_path / "b.nii.gz", np.ones((3, 3, 2), np.int16), affine)
    first = export_volume(tmp_path / "a.nii.gz", tmp_path / "a1")
    again = export_volume(tmp_path / "a.nii.gz", tmp_path / "a2")
    other = export_volume(tmp_path / "b.nii.gz", tmp_path / "b1")
    assert first.uids == again.uids
    assert first.uids.series != other.uids.series and first.uids.study != other.uids.study


def test_hu_below_minus_1024_moves_the_intercept_and_shear_is_refused() -> None:
    stored, intercept = hu_to_stored(np.array([-2048.0, 0.0, 3000.0]))
    assert intercept == -2048 and stored.dtype == np.uint16
    np.testing.assert_array_equal(stored.astype(int) + intercept, [-2048, 0, 3000])
    with pytest.raises(ValueError, match="not orthogonal"):
        slice_geometry(np.array([[1.0, 0.5, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1]]), 0)


def test_cli_exports_a_folder_and_reports_errors_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "none").mkdir()
    _write_nifti(tmp_path / "in" / "case_a.nii.gz", np.zeros((3, 3, 2), np.int16), np.eye(4))
    assert main(["--nifti-dir", str(tmp_path / "in"), "--out", str(tmp_path / "out")]) == 0
    assert "case_a: 2 slices" in capsys.readouterr().out
    assert len(list((tmp_path / "out" / "case_a").glob("*.dcm"))) == 2
    assert main(["--nifti-dir", str(tmp_path / "none"), "--out", str(tmp_path / "o2")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("dicom_export: error: no .nii.gz") and "\n" not in err
    with pytest.raises(SystemExit):
        main(["--nifti-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "o3")])
