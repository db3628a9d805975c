"""Cheap checks of an image file's header before its voxels are read.

Loaders "repair" some broken headers silently (nibabel turns a zero voxel size into 1 mm), and reading a huge or
mislabelled file costs memory before anything can refuse it. For NIfTI files the header tells the dimensionality,
the voxel size and the voxel count up front; other formats (NRRD, DICOM series) are checked after loading by
``inference.check_image``.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.openers import ImageOpener

from textdiffseg.inference import MAX_SPACING_MM, MIN_SPACING_MM, InvalidInputError, VolumeTooLargeError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
INT16_BYTES = 2


def _raw_nifti_header(path: Path) -> nib.Nifti1Header:
    """The header as written: ``nib.load`` would already have replaced a zero voxel size by 1 mm."""
    with ImageOpener(str(path), "rb") as fobj:
        start = fobj.read(4 + 344)  # sizeof_hdr, then NIfTI-1's magic at byte 344
        fobj.seek(0)
        size = int.from_bytes(start[:4], "little") if start[:4] else 0
        swapped = int.from_bytes(start[:4], "big") if start[:4] else 0
        if 348 in (size, swapped):
            header = nib.Nifti1Header.from_fileobj(fobj, check=False)
            if header["magic"].item() in (b"n+1", b"ni1"):
                return header
        elif 540 in (size, swapped):
            return nib.Nifti2Header.from_fileobj(fobj, check=False)
    raise InvalidInputError("no NIfTI header found (is it really a .nii/.nii.gz file?)")


def check_image_file(path: str | Path, max_raw_voxels: int) -> None:
    """Refuse a NIfTI file whose header shows it cannot be a 3D CT we can segment.

    Args:
        path: the file; non-NIfTI files are left to the loader and ``inference.check_image``.
        max_raw_voxels: refuse files whose voxels, once loaded, take more memory than this many int16 voxels
            would: loading keeps the stored array and its float32 copy (``4 + itemsize`` bytes a voxel), so a
            float64 file may hold half as many voxels as an int16 CT.

    Raises:
        InvalidInputError: unreadable header, not 3D (2D or a 4D series), or a voxel size outside 0.05-50 mm.
        VolumeTooLargeError: more than ``max_raw_voxels`` int16-equivalent voxels.
    """
    name = str(path).lower()
    if not name.endswith(NIFTI_SUFFIXES):
        return
    try:
        header = _raw_nifti_header(Path(path))
    except InvalidInputError:
        raise
    except Exception as err:  # noqa: BLE001 - nibabel raises many types for a broken file; all mean "not NIfTI"
        raise InvalidInputError(f"not a readable NIfTI file ({type(err).__name__}: {str(err)[:160]})") from err
    shape = tuple(int(s) for s in header.get_data_shape())
    spatial = tuple(s for s in shape[:3])
    extra = tuple(s for s in shape[3:] if s != 1)
    if len(shape) < 3 or min(spatial) < 2:
        raise InvalidInputError(f"expected a 3D volume, got shape {shape} (a 2D image?)")
    if extra:
        raise InvalidInputError(f"expected a 3D volume, got shape {shape} (a 4D series: send one 3D volume)")
    zooms = np.asarray(header["pixdim"][1:4], dtype=float)
    if not np.all((np.abs(zooms) >= MIN_SPACING_MM) & (np.abs(zooms) <= MAX_SPACING_MM)):
        sizes = tuple(float(z) for z in zooms)
        raise InvalidInputError(f"voxel size {sizes} mm in the header is outside {MIN_SPACING_MM}-{MAX_SPACING_MM} mm")
    voxels = int(np.prod(spatial))
    itemsize = np.dtype(header.get_data_dtype()).itemsize
    load_bytes, limit_bytes = voxels * (4 + itemsize), max_raw_voxels * (4 + INT16_BYTES)
    if load_bytes > limit_bytes:
        raise VolumeTooLargeError(
            f"image has {voxels:,} voxels of {itemsize} bytes: loading it would take {load_bytes / 2**30:.1f} GiB, "
            f"over the limit of {limit_bytes / 2**30:.1f} GiB for one file ({max_raw_voxels:,} int16 voxels)"
        )
