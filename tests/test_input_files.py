"""``textdiffseg.input_files.check_image_file``: the NIfTI header is judged as written, before voxels are read."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bad_inputs import write_bad_files

from textdiffseg.inference import InvalidInputError, VolumeTooLargeError
from textdiffseg.input_files import check_image_file


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bad_files")
    write_bad_files(folder)
    return folder


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("notes.nii.gz", "no NIfTI header"),
        ("empty.nii.gz", "no NIfTI header"),
        ("slice_2d.nii.gz", "2D"),
        ("series_4d.nii.gz", "4D"),
        ("spacing_0.nii.gz", "(0.0, 2.0, 2.0)"),  # nibabel itself would silently make this 1 mm
        ("spacing_1e6.nii.gz", "outside 0.05-50.0 mm"),
    ],
)
def test_bad_headers_are_refused_with_the_reason(files: Path, name: str, message: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        check_image_file(files / name, max_raw_voxels=10**8)
    assert message in str(caught.value)


def test_good_headers_pass_and_the_raw_voxel_limit_applies(files: Path) -> None:
    check_image_file(files / "good.nii.gz", max_raw_voxels=10**8)
    check_image_file(files / "photo.png", max_raw_voxels=1)  # not NIfTI: left to the loader
    with pytest.raises(VolumeTooLargeError, match="over the limit"):
        check_image_file(files / "good.nii.gz", max_raw_voxels=1000)


def test_the_limit_counts_loaded_bytes_so_wide_voxels_count_more(tmp_path: Path) -> None:
    """A compressed float64 volume is tiny on disk but takes 12 bytes a voxel once loaded (stored + float32)."""
    for dtype in (np.int16, np.float64):
        nib.save(nib.Nifti1Image(np.zeros((20, 20, 20), dtype), np.eye(4)), tmp_path / f"{np.dtype(dtype).name}.nii.gz")
    check_image_file(tmp_path / "int16.nii.gz", max_raw_voxels=8000)
    with pytest.raises(VolumeTooLargeError, match="GiB"):
        check_image_file(tmp_path / "float64.nii.gz", max_raw_voxels=8000)
    check_image_file(tmp_path / "float64.nii.gz", max_raw_voxels=16000)
