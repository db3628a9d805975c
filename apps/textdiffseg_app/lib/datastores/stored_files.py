"""Store-time checks of image and label files, before anything is copied into the datastore.

Accepted files (the ones the app's loaders read, each a single self-contained file):

* images: ``.nii``, ``.nii.gz``, ``.nrrd``, ``.mha``; labels: the same plus ``.seg.nrrd`` (3D Slicer segmentations).
* ``.mhd``/``.nhdr``/``.hdr``+``.img`` are refused: their header names another file that holds the voxels. For the
  same reason a ``.nrrd`` with a ``data file`` field, an ``.mha`` whose ``ElementDataFile`` is not ``LOCAL`` (the
  voxels would be read from any server path the header names) and a ``.nii`` with the pair magic ``ni1`` are
  refused.

An image must be a readable, single-component 3D volume (a trailing size-1 4th dimension is tolerated) whose header
gives a voxel size within ``MIN_SPACING_MM``-``MAX_SPACING_MM`` and at most ``max_voxels`` voxels; its last slice is
read, so a truncated file is refused without reading the whole volume. A label must be readable, lie on its image's
grid (same size; spacing within 1e-3 relative; origin within half a voxel; direction within 1e-3) and, unless told
otherwise (float maps such as the ``uncertainty`` tag), hold whole numbers 0-255 (all voxels are read: labels are
at most as large as their image). ``.seg.nrrd`` labels may have several components on the same spatial grid.

Every refusal is an :class:`InvalidStoredFileError` with a one-line message that names what is wrong and never a
server path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk  # noqa: N813 - the name SimpleITK documents
from monailabel.interfaces.exception import MONAILabelError, MONAILabelException
from nibabel.openers import ImageOpener

from textdiffseg.inference import MAX_SPACING_MM, MIN_SPACING_MM, InvalidInputError
from textdiffseg.input_files import check_image_file

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
LABEL_SUFFIXES = (".seg.nrrd", *IMAGE_SUFFIXES)
DEFAULT_MAX_VOXELS = 320_000_000  # int16-equivalent voxels per file: the app passes AppSettings.max_file_voxels
MAX_HEADER_BYTES = 1 << 20  # NRRD / MetaImage text headers longer than this are refused
LABEL_MAX_VALUE = 255
SPACING_RTOL = 1e-3
DIRECTION_ATOL = 1e-3
ORIGIN_MAX_VOXELS = 0.5

_IMAGE_IO = {
    ".nii.gz": "NiftiImageIO",
    ".nii": "NiftiImageIO",
    ".nrrd": "NrrdImageIO",
    ".seg.nrrd": "NrrdImageIO",
    ".mha": "MetaImageIO",
}
_FORMAT = {"NiftiImageIO": "NIfTI", "NrrdImageIO": "NRRD", "MetaImageIO": "MetaImage"}


class InvalidStoredFileError(MONAILabelException, ValueError):
    """A file offered to the datastore is not one it stores (wrong type, unreadable, wrong grid or values).

    A ``ValueError`` and a ``MONAILabelException`` with ``MONAILabelError.INVALID_INPUT``, so the server's error
    middleware answers 400 with the message; the message is one line and holds no server path.
    """

    def __init__(self, message: str) -> None:
        super().__init__(MONAILabelError.INVALID_INPUT, message)

    def __str__(self) -> str:
        return str(self.msg)


@dataclass(frozen=True)
class Grid:
    """The spatial voxel grid of a file (ITK order: x, y, z), its component count and pixel type."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]  # 3x3, row-major
    components: int
    pixel_type: str

    @property
    def voxels(self) -> int:
        """Number of spatial voxels."""
        return int(np.prod(self.size))


def accepted_suffix(file_name: str, suffixes: tuple[str, ...]) -> str:
    """The longest of ``suffixes`` that ``file_name`` ends with (case-insensitive), lower-cased.

    Raises:
        InvalidStoredFileError: no accepted suffix, or nothing before it.
    """
    lower = file_name.lower()
    for suffix in sorted(suffixes, key=len, reverse=True):
        if lower.endswith(suffix) and len(lower) > len(suffix):
            return suffix
    raise InvalidStoredFileError(f"file type not accepted: send one of {', '.join(suffixes)}")


def _check_self_contained(path: Path, suffix: str) -> None:
    """Refuse NRRD / MetaImage headers that point at another file for their voxels."""
    io = _IMAGE_IO[suffix]
    if io not in ("NrrdImageIO", "MetaImageIO"):
        return
    with path.open("rb") as handle:
        head = handle.read(MAX_HEADER_BYTES)
    lines = head.split(b"\n")
    if io == "NrrdImageIO":
        if not head.startswith(b"NRRD"):
            raise InvalidStoredFileError("not a readable NRRD file (no NRRD magic)")
        for line in lines[1:]:
            line = line.rstrip(b"\r")
            if not line:
                return
            key = line.split(b":", 1)[0].strip().lower()
            if key in (b"data file", b"datafile"):
                raise InvalidStoredFileError("NRRD files with a detached 'data file' are not accepted")
        if len(head) == MAX_HEADER_BYTES:
            raise InvalidStoredFileError(f"NRRD header is longer than {MAX_HEADER_BYTES} bytes")
        return
    for line in lines[:-1] if len(head) == MAX_HEADER_BYTES else lines:
        key, sep, value = line.partition(b"=")
        if sep and key.strip().lower() == b"elementdatafile":
            if value.strip().upper() != b"LOCAL":
                raise InvalidStoredFileError("MetaImage files must hold their voxels (ElementDataFile = LOCAL)")
            return
    raise InvalidStoredFileError("not a readable MetaImage file (no ElementDataFile = LOCAL in its header)")


def _check_single_file_nifti(path: Path) -> None:
    """Refuse a ``.nii`` whose magic says header/image pair (``ni1``/``ni2``): its voxels are not in the file."""
    try:
        with ImageOpener(str(path), "rb") as handle:
            head = handle.read(348)
    except Exception:  # noqa: BLE001 - gzip/OS errors for a broken file; the header check names the problem
        return
    if head[344:348] == b"ni1\x00" or head[4:8] == b"ni2\x00":
        raise InvalidStoredFileError("NIfTI header/image pairs (.hdr/.img) are not accepted: send one .nii(.gz) file")


def _reader(path: Path, suffix: str) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetImageIO(_IMAGE_IO[suffix])
    reader.SetFileName(str(path))
    return reader


def _spatial_grid(reader: sitk.ImageFileReader, what: str) -> Grid:
    """The header's grid; a 3D volume, or 4D with a trailing size-1 dimension."""
    size = tuple(int(s) for s in reader.GetSize())
    dim = len(size)
    if dim < 3 or any(s != 1 for s in size[3:]):
        raise InvalidStoredFileError(f"{what} must be a 3D volume, got size {size} ({dim}D)")
    if min(size[:3]) < 2:
        raise InvalidStoredFileError(f"{what} must be a 3D volume, got size {size} (a 2D image?)")
    direction = np.asarray(reader.GetDirection(), dtype=float).reshape(dim, dim)[:3, :3]
    return Grid(
        size=size[:3],  # type: ignore[arg-type]
        spacing=tuple(float(s) for s in reader.GetSpacing()[:3]),  # type: ignore[arg-type]
        origin=tuple(float(o) for o in reader.GetOrigin()[:3]),  # type: ignore[arg-type]
        direction=tuple(float(d) for d in direction.ravel()),
        components=int(reader.GetNumberOfComponents()),
        pixel_type=sitk.GetPixelIDValueAsString(reader.GetPixelID()),
    )


def read_grid(path: str | os.PathLike[str], suffix: str, what: str, max_voxels: int = DEFAULT_MAX_VOXELS) -> Grid:
    """Header-only checks shared by images and labels; returns the grid.

    Raises:
        InvalidStoredFileError: external data file, unreadable header, not 3D, bad voxel size, too many voxels.
    """
    path = Path(path)
    kind = _FORMAT[_IMAGE_IO[suffix]]
    if not path.is_file() or path.stat().st_size == 0:
        raise InvalidStoredFileError(f"{what} file is empty")
    _check_self_contained(path, suffix)
    if _IMAGE_IO[suffix] == "NiftiImageIO":
        _check_single_file_nifti(path)
        try:
            check_image_file(path, max_voxels)
        except InvalidInputError as err:
            message = str(err).replace(str(path), "<file>").replace(path.name, "<file>")
            raise InvalidStoredFileError(f"{what}: {message}") from None
    reader = _reader(path, suffix)
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise InvalidStoredFileError(f"{what} is not a readable {kind} file") from None
    grid = _spatial_grid(reader, what)
    if "complex" in grid.pixel_type.lower():
        raise InvalidStoredFileError(f"{what} has complex voxels ({grid.pixel_type})")
    spacing = np.abs(np.asarray(grid.spacing))
    if not np.all((spacing >= MIN_SPACING_MM) & (spacing <= MAX_SPACING_MM)):
        raise InvalidStoredFileError(
            f"{what} voxel size {grid.spacing} mm is outside {MIN_SPACING_MM:g}-{MAX_SPACING_MM:g} mm"
        )
    if grid.voxels > max_voxels:
        raise InvalidStoredFileError(f"{what} has {grid.voxels:,} voxels, over the limit of {max_voxels:,}")
    return grid


def check_image(path: str | os.PathLike[str], suffix: str, max_voxels: int = DEFAULT_MAX_VOXELS) -> Grid:
    """Refuse a file that is not a complete single-component 3D image (see the module docstring)."""
    grid = read_grid(path, suffix, "image", max_voxels)
    if grid.components != 1:
        raise InvalidStoredFileError(f"image must have one component per voxel, got {grid.components}")
    reader = _reader(Path(path), suffix)
    reader.ReadImageInformation()
    dim = reader.GetDimension()
    last = [0] * dim
    last[2] = grid.size[2] - 1
    reader.SetExtractIndex(last)
    reader.SetExtractSize([*grid.size[:2], 1] + [1] * (dim - 3))
    try:
        reader.Execute()  # the last slice: a truncated file fails here without the whole volume in memory
    except RuntimeError:
        raise InvalidStoredFileError("image data is truncated or unreadable") from None
    return grid


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def check_same_grid(label: Grid, image: Grid, image_id: str) -> None:
    """Refuse a label whose spatial grid is not its image's, naming the first difference."""
    if label.size != image.size:
        raise InvalidStoredFileError(f"label grid {label.size} differs from image '{image_id}' {image.size}")
    if not np.allclose(label.spacing, image.spacing, rtol=SPACING_RTOL, atol=0.0):
        raise InvalidStoredFileError(
            f"label spacing {_fmt(label.spacing)} differs from image '{image_id}' {_fmt(image.spacing)}"
        )
    if not np.allclose(label.direction, image.direction, rtol=0.0, atol=DIRECTION_ATOL):
        raise InvalidStoredFileError(
            f"label direction {_fmt(label.direction)} differs from image '{image_id}' {_fmt(image.direction)}"
        )
    axes = np.asarray(image.direction).reshape(3, 3) * np.asarray(image.spacing)  # columns: one voxel step per axis
    offset = np.linalg.solve(axes, np.asarray(label.origin) - np.asarray(image.origin))
    if np.any(np.abs(offset) > ORIGIN_MAX_VOXELS):
        raise InvalidStoredFileError(
            f"label origin {_fmt(label.origin)} is more than half a voxel from image '{image_id}' "
            f"origin {_fmt(image.origin)}"
        )


def _voxel_chunks(path: Path, suffix: str) -> Iterator[np.ndarray]:
    """All voxels of a file, a few planes at a time, as the app's loaders see them.

    NIfTI through nibabel (MONAI's ``LoadImage`` reads NIfTI with it; ITK's NIfTI reader silently turns NaN into 0),
    chunked along z so no full-size float copy is made; other formats through SimpleITK in one piece.
    """
    try:
        if _IMAGE_IO[suffix] == "NiftiImageIO":
            proxy = nib.load(str(path)).dataobj
            for start in range(0, proxy.shape[2], 8):
                yield np.asanyarray(proxy[:, :, start : start + 8, ...])
        else:
            yield sitk.GetArrayViewFromImage(_reader(path, suffix).Execute())
    except InvalidStoredFileError:
        raise
    except Exception:  # noqa: BLE001 - nibabel/zlib/ITK raise many types for a truncated or broken file
        raise InvalidStoredFileError("label data is truncated or unreadable") from None


def _check_label_values(chunk: np.ndarray) -> None:
    """Whole numbers 0-255."""
    if chunk.size == 0:
        return
    if not (np.issubdtype(chunk.dtype, np.integer) or chunk.dtype == bool):
        bad = ~np.isfinite(chunk) | (chunk != np.floor(chunk))
        if bad.any():
            raise InvalidStoredFileError(
                f"label values must be whole numbers 0-{LABEL_MAX_VALUE}; found {float(chunk[bad][0]):g}"
            )
    low, high = chunk.min(), chunk.max()
    if low < 0 or high > LABEL_MAX_VALUE:
        found = low if low < 0 else high
        raise InvalidStoredFileError(f"label values must be whole numbers 0-{LABEL_MAX_VALUE}; found {found:g}")


def check_label(
    path: str | os.PathLike[str],
    suffix: str,
    image: Grid,
    image_id: str,
    integer_values: bool = True,
    max_voxels: int = DEFAULT_MAX_VOXELS,
) -> Grid:
    """Refuse a label that is unreadable, off its image's grid or (``integer_values``) not whole numbers 0-255."""
    grid = read_grid(path, suffix, "label", max_voxels)
    if grid.components != 1 and suffix != ".seg.nrrd":
        raise InvalidStoredFileError(f"label must have one component per voxel, got {grid.components}")
    check_same_grid(grid, image, image_id)
    for chunk in _voxel_chunks(Path(path), suffix):
        if integer_values:
            _check_label_values(chunk)
    return grid
