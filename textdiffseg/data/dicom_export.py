"""Write NIfTI CT volumes as DICOM CT series (one file per slice) and optionally STOW them to a DICOMweb PACS.

Run ``python -m textdiffseg.data.dicom_export --nifti-dir DIR --out OUT [--stow URL]``: every ``*.nii.gz``/``*.nii``
at the top of ``DIR`` (the flat MONAI Label layout ``textdiffseg.data.phantom`` writes) becomes the series
``OUT/<case>/<slice>.dcm``; with ``--stow http://127.0.0.1:8042/dicom-web`` the files are also stored in the PACS.

Geometry: NIfTI world coordinates are RAS+, DICOM patient coordinates LPS+, so the voxel-to-world affine is flipped
on its first two rows. Slice ``k`` is the plane ``data[:, :, k]``; its rows run along the NIfTI's second axis and its
columns along the first, so ``ImageOrientationPatient`` = (first axis, second axis) direction cosines,
``PixelSpacing`` = (second axis spacing, first axis spacing) and ``ImagePositionPatient`` = the world position of
voxel ``(0, 0, k)``. HU are stored as unsigned 16-bit values with ``RescaleIntercept`` (normally -1024) and slope 1.
UIDs are derived from the case name and the file's bytes, so exporting the same file twice gives the same UIDs
(a PACS then keeps one copy) and different files never share one.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
STUDY_DATE = "20260101"  # synthetic data: a fixed date keeps exports reproducible
STUDY_TIME = "120000"


@dataclass(frozen=True)
class SeriesUIDs:
    """The identifiers shared by every slice of one exported series."""

    study: str
    series: str
    frame_of_reference: str


@dataclass(frozen=True)
class ExportedSeries:
    """One written series: where its files are and what identifies it."""

    case: str
    folder: Path
    files: tuple[Path, ...]
    uids: SeriesUIDs


def lps_affine(ras_affine: np.ndarray) -> np.ndarray:
    """The voxel-to-LPS affine of a voxel-to-RAS (NIfTI) affine."""
    return RAS_TO_LPS @ np.asarray(ras_affine, dtype=float)


def slice_geometry(ras_affine: np.ndarray, k: int) -> dict[str, list[float]]:
    """``ImageOrientationPatient``, ``ImagePositionPatient``, ``PixelSpacing`` of plane ``k`` of a NIfTI volume.

    Raises ``ValueError`` when the first two voxel axes are not orthogonal (DICOM pixels are rectangular).
    """
    lps = lps_affine(ras_affine)
    col_step, row_step, slice_step = lps[:3, 0], lps[:3, 1], lps[:3, 2]
    sx, sy = float(np.linalg.norm(col_step)), float(np.linalg.norm(row_step))
    if min(sx, sy, float(np.linalg.norm(slice_step))) <= 0:
        raise ValueError("affine has a zero-length voxel axis")
    row_dir, col_dir = col_step / sx, row_step / sy
    if abs(float(np.dot(row_dir, col_dir))) > 1e-4:
        raise ValueError("affine's first two axes are not orthogonal: cannot be written as DICOM slices")
    position = lps @ np.array([0.0, 0.0, float(k), 1.0])
    return {
        "ImageOrientationPatient": [_ds(v) for v in (*row_dir, *col_dir)],
        "ImagePositionPatient": [_ds(v) for v in position[:3]],
        "PixelSpacing": [_ds(sy), _ds(sx)],
    }


def _ds(value: float) -> float:
    """A float that fits a DICOM decimal string (16 characters)."""
    return float(f"{value:.6g}") if abs(value) >= 1e-6 else 0.0


def series_uids(case: str, content: bytes) -> SeriesUIDs:
    """Deterministic study, series and frame-of-reference UIDs of one case."""
    digest = hashlib.sha256(content).hexdigest()
    return SeriesUIDs(
        study=generate_uid(entropy_srcs=["textdiffseg", case, digest, "study"]),
        series=generate_uid(entropy_srcs=["textdiffseg", case, digest, "series"]),
        frame_of_reference=generate_uid(entropy_srcs=["textdiffseg", case, digest, "for"]),
    )


def hu_to_stored(hu: np.ndarray) -> tuple[np.ndarray, int]:
    """Unsigned 16-bit stored values and the ``RescaleIntercept`` that turns them back into HU (slope 1)."""
    rounded = np.rint(hu).astype(np.int64)
    intercept = min(-1024, int(rounded.min())) if rounded.size else -1024
    stored = rounded - intercept
    if stored.size and int(stored.max()) > np.iinfo(np.uint16).max:
        raise ValueError(f"HU range {int(rounded.min())}..{int(rounded.max())} does not fit in 16 bits")
    return stored.astype(np.uint16), intercept


def _base_dataset(case: str, uids: SeriesUIDs, shape: tuple[int, int, int], description: str) -> Dataset:
    """Patient, study, series and image-pixel attributes shared by every slice."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.Modality = "CT"
    ds.PatientName = f"Phantom^{case}"
    ds.PatientID = case
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = uids.study
    ds.SeriesInstanceUID = uids.series
    ds.FrameOfReferenceUID = uids.frame_of_reference
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = STUDY_DATE
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = STUDY_TIME
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = f"TextDiffSeg phantom {case}"
    ds.SeriesDescription = description
    ds.SeriesNumber = 1
    ds.Manufacturer = "TextDiffSeg synthetic phantom"
    ds.BodyPartExamined = "ABDOMEN"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = shape[1], shape[0]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    return ds


def export_volume(nifti: Path, out_dir: Path, case: str | None = None) -> ExportedSeries:
    """Write one NIfTI CT volume as a DICOM CT series in ``out_dir`` (created); returns what was written."""
    img = nib.load(str(nifti))
    if len(img.shape) != 3:
        raise ValueError(f"{nifti}: expected a 3D volume, got shape {img.shape}")
    case = case or nifti.name.split(".")[0]
    affine = img.affine
    stored, intercept = hu_to_stored(np.asarray(img.get_fdata(dtype=np.float32)))
    uids = series_uids(case, nifti.read_bytes())
    base = _base_dataset(case, uids, img.shape, f"CT {case} (NIfTI export)")
    thickness = _ds(float(np.linalg.norm(lps_affine(affine)[:3, 2])))
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(img.shape[2]):
        sop_uid = generate_uid(entropy_srcs=[uids.series, str(k)])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.update(base)
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = k + 1
        for key, value in slice_geometry(affine, k).items():
            setattr(ds, key, value)
        ds.SliceThickness = thickness
        ds.SpacingBetweenSlices = thickness
        ds.SliceLocation = ds.ImagePositionPatient[2]
        ds.RescaleIntercept = intercept
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
        ds.is_little_endian, ds.is_implicit_VR = True, False
        path = out_dir / f"{k + 1:04d}.dcm"
        ds.save_as(str(path), write_like_original=False)
        files.append(path)
    return ExportedSeries(case, out_dir, tuple(files), uids)


def nifti_volumes(folder: Path) -> list[Path]:
    """The NIfTI files at the top of ``folder`` (not ``labels/``), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith((".nii.gz", ".nii")))


def export_folder(nifti_dir: Path, out: Path, limit: int | None = None) -> list[ExportedSeries]:
    """Export every top-level NIfTI of ``nifti_dir`` to ``out/<case>/`` (at most ``limit`` volumes)."""
    volumes = nifti_volumes(nifti_dir)[:limit]
    if not volumes:
        raise FileNotFoundError(f"no .nii.gz or .nii files at the top of {nifti_dir}")
    return [export_volume(path, out / path.name.split(".")[0]) for path in volumes]


def stow_files(files: Iterable[Path], dicomweb_url: str, batch: int = 32) -> int:
    """Store DICOM files in a DICOMweb server (STOW-RS) in batches; returns how many were sent."""
    from dicomweb_client.api import DICOMwebClient
    from pydicom import dcmread

    client = DICOMwebClient(url=dicomweb_url)
    paths = list(files)
    for start in range(0, len(paths), batch):
        client.store_instances([dcmread(str(p)) for p in paths[start : start + batch]])
    return len(paths)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(prog="python -m textdiffseg.data.dicom_export", description=__doc__.split("\n")[0])
    p.add_argument("--nifti-dir", required=True, type=Path, help="folder with NIfTI CT volumes at its top level")
    p.add_argument("--out", required=True, type=Path, help="output folder: one sub-folder of slices per volume")
    p.add_argument("--limit", type=int, default=None, help="export only the first N volumes (by name)")
    p.add_argument("--stow", metavar="URL", help="also store the series in this DICOMweb server (STOW-RS)")
    args = p.parse_args(argv)
    if not args.nifti_dir.is_dir():
        p.error(f"--nifti-dir {args.nifti_dir} is not a folder")
    try:
        exported = export_folder(args.nifti_dir, args.out, args.limit)
        for series in exported:
            sent = stow_files(series.files, args.stow) if args.stow else 0
            where = f", stored {sent} in {args.stow}" if args.stow else ""
            print(f"{series.case}: {len(series.files)} slices, SeriesInstanceUID {series.uids.series}{where}")
    except (OSError, ValueError) as err:  # requests' errors (STOW) are OSErrors too
        print(f"dicom_export: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
