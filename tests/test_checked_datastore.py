"""``lib/datastores/checked_local.CheckedLocalDatastore``: unsafe names and paths refused, files validated before they
are stored, stores atomic. Tiny NIfTI/NRRD/MetaImage files in ``tmp_path``; no server.

The app's package is named ``lib``; the fixture puts the app folder on ``sys.path`` only while this module runs.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813 - the name SimpleITK documents
from app_modules import app_modules

from textdiffseg_server.errors import error_answer
from textdiffseg_server.names import UnsafeNameError

AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])
SHAPE = (20, 20, 10)
BAD_NAMES = ["../x", "../../escaped", "/etc/passwd", "a/b", "a\\b", "..", ".", ".hidden", "a\x00b", "", " x"]


@pytest.fixture(scope="module")
def lib() -> Iterator[SimpleNamespace]:
    """The app's datastore modules under test."""
    with app_modules(
        checked_local="lib.datastores.checked_local",
        stored_files="lib.datastores.stored_files",
        uncertainty_label="lib.infers.uncertainty_label",
    ) as modules:
        yield modules


def _nifti(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def _image(path: Path, shape: tuple[int, ...] = SHAPE) -> Path:
    rng = np.random.default_rng(0)
    return _nifti(path, rng.integers(-1000, 1000, size=shape).astype(np.int16))


def _label(path: Path, shape: tuple[int, ...] = SHAPE, value: int = 1, dtype: type = np.uint8) -> Path:
    data = np.zeros(shape, dtype=dtype)
    data[5:10, 5:10, 2:6] = value
    return _nifti(path, data)


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (links not followed) with its bytes: the filesystem state to compare."""
    found = {}
    for root, _dirs, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            found[str(path.relative_to(folder))] = b"<link>" if path.is_symlink() else path.read_bytes()
    return found


@pytest.fixture()
def env(lib: SimpleNamespace, tmp_path: Path) -> SimpleNamespace:
    """A datastore in ``tmp_path/root/studies`` holding ``phantom_000``; uploads in ``tmp_path/uploads``."""
    root = tmp_path / "root"
    studies = root / "studies"
    uploads = tmp_path / "uploads"
    uploads.mkdir(parents=True)
    studies.mkdir(parents=True)
    store = lib.checked_local.CheckedLocalDatastore(str(studies))
    store.add_image("phantom_000", str(_image(uploads / "upload_a.nii.gz")), {})
    return SimpleNamespace(store=store, studies=studies, root=root, uploads=uploads, tmp=tmp_path)


def _refused(lib: SimpleNamespace, call: object, *args: object) -> str:
    """Run ``call(*args)``; it must raise InvalidStoredFileError; returns the message."""
    with pytest.raises(lib.stored_files.InvalidStoredFileError) as err:
        call(*args)  # type: ignore[operator]
    return str(err.value)


# --- names and paths -------------------------------------------------------------------------------------------------


def test_traversal_names_refused_everywhere_and_nothing_written_outside(
    lib: SimpleNamespace, env: SimpleNamespace
) -> None:
    store = env.store
    image = _image(env.uploads / "good.nii.gz")
    label = _label(env.uploads / "good_label.nii.gz")
    store.save_label("phantom_000", str(label), "final", {})
    outside = env.tmp / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("secret")
    before = _files(env.tmp)
    calls = [
        lambda bad: store.add_image(bad, str(image), {}),
        lambda bad: store.save_label(bad, str(label), "final", {}),
        lambda bad: store.save_label("phantom_000", str(label), bad, {}),
        lambda bad: store.get_image(bad),
        lambda bad: store.get_image_uri(bad),
        lambda bad: store.get_image_info(bad),
        lambda bad: store.update_image_info(bad, {"x": 1}),
        lambda bad: store.remove_image(bad),
        lambda bad: store.get_label(bad, "final"),
        lambda bad: store.get_label("phantom_000", bad),
        lambda bad: store.get_label_uri(bad, "final"),
        lambda bad: store.get_label_uri("phantom_000", bad),
        lambda bad: store.get_label_info("phantom_000", bad),
        lambda bad: store.update_label_info("phantom_000", bad, {"x": 1}),
        lambda bad: store.remove_label("phantom_000", bad),
        lambda bad: store.remove_label(bad, "final"),
        lambda bad: store.get_labels_by_image_id(bad),
        lambda bad: store.get_label_by_image_id(bad, "final"),
        lambda bad: store.get_label_by_image_id("phantom_000", bad),
    ]
    for bad in BAD_NAMES:
        for index, call in enumerate(calls):
            if bad == "" and index == 0:
                continue  # an empty id means "take it from the file name" (below)
            with pytest.raises(UnsafeNameError):
                call(bad)
    assert _files(env.tmp) == before
    assert not (env.root / "x.nii.gz").exists() and not (env.tmp / "escaped.nii.gz").exists()
    assert store.list_images() == ["phantom_000"]
    assert store.get_label_by_image_id("phantom_000", "final") == "phantom_000"


def test_unknown_safe_ids_keep_monai_label_behaviour(env: SimpleNamespace) -> None:
    store = env.store
    assert store.get_image_uri("nope") == "" and store.get_image("nope") is None
    assert store.get_image_info("nope") == {} and store.get_label_info("nope", "final") == {}
    assert store.get_label_uri("phantom_000", "final") == "" and store.get_label("nope", "final") is None
    assert store.get_labels_by_image_id("nope") == {} and store.get_label_by_image_id("nope", "final") == ""
    from monailabel.interfaces.exception import ImageNotFoundException, LabelNotFoundException

    with pytest.raises(ImageNotFoundException):
        store.remove_image("nope")
    with pytest.raises(ImageNotFoundException):
        store.save_label("nope", str(_label(env.uploads / "l.nii.gz")), "final", {})
    with pytest.raises(LabelNotFoundException):
        store.update_label_info("phantom_000", "final", {})


def test_symlink_inside_studies_pointing_outside_is_refused(lib: SimpleNamespace, env: SimpleNamespace) -> None:
    outside = env.tmp / "outside"
    outside.mkdir()
    secret_image = _image(outside / "secret.nii.gz")
    secret_label = _label(outside / "secret_label.nii.gz")
    (env.studies / "leak.nii.gz").symlink_to(secret_image)
    (env.studies / "labels" / "final" / "leak.nii.gz").symlink_to(secret_label)
    store = lib.checked_local.CheckedLocalDatastore(str(env.studies))  # reconcile lists the links
    assert "leak" in store.list_images()
    for call in (
        lambda: store.get_image_uri("leak"),
        lambda: store.get_image("leak"),
        lambda: store.get_image_info("leak"),
        lambda: store.get_label_uri("leak", "final"),
        lambda: store.get_label("leak", "final"),
        lambda: store.remove_image("leak"),
        lambda: store.save_label("leak", str(_label(env.uploads / "l.nii.gz")), "final", {}),
    ):
        with pytest.raises(UnsafeNameError):
            call()
    assert secret_image.is_file() and secret_label.is_file()
    # training and the dataset archive never see it
    assert all("leak" not in pair["image"] for pair in store.datalist())


def test_upload_over_a_link_to_outside_is_refused(lib: SimpleNamespace, env: SimpleNamespace) -> None:
    outside = env.tmp / "outside"
    outside.mkdir()
    target = outside / "victim.nii.gz"
    target.write_bytes(b"keep me")
    (env.studies / "victim.nii.gz").symlink_to(target)
    with pytest.raises(UnsafeNameError):
        env.store.add_image("victim", str(_image(env.uploads / "u.nii.gz")), {})
    assert target.read_bytes() == b"keep me"


# --- store-time validation of images ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["payload.py", "notes.txt", "noextension", "image.mhd", "image.png", ".nii.gz"])
def test_file_types_not_accepted(lib: SimpleNamespace, env: SimpleNamespace, name: str) -> None:
    upload = env.uploads / name
    upload.write_bytes(b"import os\nos.system('id')\n")
    before = _files(env.root)
    message = _refused(lib, env.store.add_image, "payload", str(upload), {})
    assert "file type not accepted" in message
    _refused(lib, env.store.save_label, "phantom_000", str(upload), "final", {})
    assert _files(env.root) == before and env.store.list_images() == ["phantom_000"]


@pytest.mark.parametrize("content", [b"", b"garbage" * 100])
def test_empty_or_garbage_image_refused(lib: SimpleNamespace, env: SimpleNamespace, content: bytes) -> None:
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha"):
        upload = env.uploads / f"bad{suffix}"
        upload.write_bytes(content)
        before = _files(env.root)
        message = _refused(lib, env.store.add_image, "bad", str(upload), {})
        assert str(env.tmp) not in message and "\n" not in message
        assert _files(env.root) == before
    assert "bad" not in env.store.list_images()


def test_truncated_image_refused(lib: SimpleNamespace, env: SimpleNamespace) -> None:
    whole = _image(env.uploads / "whole.nii.gz").read_bytes()
    upload = env.uploads / "cut.nii.gz"
    upload.write_bytes(whole[: len(whole) * 2 // 3])
    assert "truncated" in _refused(lib, env.store.add_image, "cut", str(upload), {})
    assert not (env.studies / "cut.nii.gz").exists()


@pytest.mark.parametrize("shape", [(20, 20), (20, 20, 1), (20, 20, 10, 3)])
def test_not_3d_image_refused(lib: SimpleNamespace, env: SimpleNamespace, shape: tuple[int, ...]) -> None:
    upload = _image(env.uploads / "flat.nii.gz", shape)
    message = _refused(lib, env.store.add_image, "flat", str(upload), {})
    assert "3D" in message
    assert "flat" not in env.store.list_images() and not (env.studies / "flat.nii.gz").exists()


def test_image_with_zero_voxel_size_or_too_many_voxels_refused(lib: SimpleNamespace, env: SimpleNamespace) -> None:
    zero = nib.Nifti1Image(np.zeros(SHAPE, np.int16), None)
    zero.header.set_zooms((0.0, 2.0, 3.0))
    zero.set_qform(None, code=0)
    zero.set_sform(None, code=0)
    nib.save(zero, env.uploads / "zero.nii.gz")
    assert "voxel size" in _refused(lib, env.store.add_image, "zero", str(env.uploads / "zero.nii.gz"), {})
    huge = _nifti(env.uploads / "huge.nii.gz", np.zeros(SHAPE, np.int16), np.diag([1e6, 2.0, 3.0, 1.0]))
    assert "voxel size" in _refused(lib, env.store.add_image, "huge", str(huge), {})
    small = lib.checked_local.CheckedLocalDatastore(str(env.studies), max_voxels=1000)
    assert "voxels" in _refused(lib, small.add_image, "big", str(_image(env.uploads / "big.nii.gz")), {})


def test_nrrd_and_metaimage_pointing_at_another_file_refused(lib: SimpleNamespace, env: SimpleNamespace) -> None:
    outside = env.tmp / "secret.raw"
    outside.write_bytes(bytes(20 * 20 * 10))
    nrrd = env.uploads / "detached.nrrd"
    nrrd.write_bytes(
        b"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 20 20 10\nspacings: 1 1 1\nencoding: raw\n"
        b"data file: " + str(outside).encode() + b"\n\n"
    )
    mha = env.uploads / "detached.mha"
    mha.write_bytes(
        b"ObjectType = Image\nNDims = 3\nDimSize = 20 20 10\nElementSpacing = 1 1 1\nElementType = MET_UCHAR\n"
        b"ElementDataFile = " + str(outside).encode() + b"\n"
    )
    assert "data file" in _refused(lib, env.store.add_image, "detached", str(nrrd), {})
    assert "ElementDataFile" in _refused(lib, env.store.add_image, "detached", str(mha), {})
    assert "detached" not in env.store.list_images()


def test_nifti_pair_header_renamed_to_nii_refused(lib: SimpleNamespace, env: SimpleNamespace) -> None:
    nib.save(nib.Nifti1Pair(np.ones(SHAPE, np.int16), AFFINE), str(env.uploads / "pair.img"))
    upload = env.uploads / "pair.nii"
    upload.write_bytes((env.uploads / "pair.hdr").read_bytes())
    assert "header/image pairs" in _refused(lib, env.store.add_image, "pair", str(upload), {})


@pytest.mark.parametrize("suffix", [".nii", ".nrrd", ".mha"])
def test_other_accepted_image_formats_stored(lib: SimpleNamespace, env: SimpleNamespace, suffix: str) -> None:
    volume = sitk.GetImageFromArray(np.arange(10 * 12 * 14, dtype=np.int16).reshape(10, 12, 14))
    volume.SetSpacing((1.5, 1.5, 2.5))
    upload = env.uploads / f"other{suffix}"
    sitk.WriteImage(volume, str(upload), useCompression=suffix != ".nii")
    assert env.store.add_image("other", str(upload), {}) == "other"
    assert Path(env.store.get_image_uri("other")).read_bytes() == upload.read_bytes()


# --- store-time validation of labels ---------------------------------------------------------------------------------


def test_good_image_and_label_stored_and_readable(lib: SimpleNamespace, env: SimpleNamespace) -> None:
    image = _image(env.uploads / "case.nii.gz")
    label = _label(env.uploads / "case_label.nii.gz", value=3)
    assert env.store.add_image("", str(image), {"source": "test"}) == "case"
    assert env.store.save_label("case", str(label), "final", {"label_info": [{"name": "liver", "idx": 3}]}) == "case"
    assert env.store.get_image("case").read() == image.read_bytes()
    assert env.store.get_label("case", "final").read() == label.read_bytes()
    assert Path(env.store.get_label_uri("case", "final")) == (env.studies / "labels/final/case.nii.gz").resolve()
    assert env.store.get_image_info("case")["source"] == "test"
    assert env.store.get_label_info("case", "final")["label_info"] == [{"name": "liver", "idx": 3}]
    # datastore_v2.json as LocalDatastore writes it, and read back by a fresh instance
    saved = json.loads((env.studies / "datastore_v2.json").read_text())
    assert saved["objects"]["case"]["image"]["ext"] == ".nii.gz"
    assert saved["objects"]["case"]["labels"]["final"]["info"]["name"] == "case.nii.gz"
    reopened = lib.checked_local.CheckedLocalDatastore(str(env.studies))
    assert reopened.datalist() == [
        {
            "image": str((env.studies / "case.nii.gz").resolve()),
            "label": str((env.studies / "labels/final/case.nii.gz").resolve()),
        }
    ]
    assert [f for f in os.listdir(env.studies / "labels/final") if f.endswith(".tmp")] == []


def test_label_of_another_shape_refused_with_message(lib: SimpleNamespace, env: SimpleNamespace) -> None:
    label = _label(env.uploads / "small.nii.gz", shape=(10, 10, 5))
    message = _refused(lib, env.store.save_label, "phantom_000", str(label), "final", {})
    assert message == "label grid (10, 10, 5) differs from image 'phantom_000' (20, 20, 10)"
    assert not (env.studies / "labels/final/phantom_000.nii.gz").exists()
    assert env.store.get_label_by_image_id("phantom_000", "final") == ""


@pytest.mark.parametrize(
    ("affine", "expected"),
    [
        (np.diag([2.0, 2.0, 3.1, 1.0]), "label spacing (2, 2, 3.1) differs from image 'phantom_000' (2, 2, 3)"),
        (np.array([[0, 2.0, 0, 0], [2.0, 0, 0, 0], [0, 0, 3.0, 0], [0, 0, 0, 1]]), "label direction"),
        (np.array([[2.0, 0, 0, 1.5], [0, 2.0, 0, 0], [0, 0, 3.0, 0], [0, 0, 0, 1]]), "more than half a voxel"),
    ],
)
def test_label_off_the_image_grid_refused(
    lib: SimpleNamespace, env: SimpleNamespace, affine: np.ndarray, expected: str
) -> None:
    data = np.zeros(SHAPE, np.uint8)
    label = _nifti(env.uploads / "off.nii.gz", data, affine)
    assert expected in _refused(lib, env.store.save_label, "phantom_000", str(label), "final", {})


def test_label_within_tolerance_accepted(env: SimpleNamespace) -> None:
    affine = np.array([[2.0, 0, 0, 0.4], [0, 2.0, 0, 0], [0, 0, 3.0001, 0], [0, 0, 0, 1]])  # 0.2 voxel, 3e-5 spacing
    label = _nifti(env.uploads / "near.nii.gz", np.zeros(SHAPE, np.uint8), affine)
    assert env.store.save_label("phantom_000", str(label), "final", {}) == "phantom_000"


@pytest.mark.parametrize(
    ("data", "found"),
    [
        (np.full(SHAPE, 0.5, np.float32), "found 0.5"),
        (np.full(SHAPE, np.nan, np.float32), "found nan"),
        (np.full(SHAPE, 300, np.uint16), "found 300"),
        (np.full(SHAPE, -1, np.int16), "found -1"),
    ],
)
def test_label_values_not_whole_0_to_255_refused(
    lib: SimpleNamespace, env: SimpleNamespace, data: np.ndarray, found: str
) -> None:
    label = _nifti(env.uploads / "values.nii.gz", data)
    message = _refused(lib, env.store.save_label, "phantom_000", str(label), "final", {})
    assert found in message
    assert not (env.studies / "labels/final/phantom_000.nii.gz").exists()


def test_float_label_with_whole_values_accepted(env: SimpleNamespace) -> None:
    label = _label(env.uploads / "float_whole.nii.gz", value=2, dtype=np.float32)
    assert env.store.save_label("phantom_000", str(label), "original", {}) == "phantom_000"


def test_uncertainty_tag_float_map_accepted(lib: SimpleNamespace, env: SimpleNamespace) -> None:
    assert lib.uncertainty_label.UNCERTAINTY_TAG in lib.checked_local.FLOAT_LABEL_TAGS
    volume = np.random.default_rng(1).random(SHAPE).astype(np.float32)
    path = lib.uncertainty_label.write_uncertainty_map(volume, AFFINE)  # the app's own writer
    try:
        env.store.save_label("phantom_000", path, "uncertainty", {})
    finally:
        os.remove(path)
    stored = nib.load(env.store.get_label_uri("phantom_000", "uncertainty")).get_fdata()
    np.testing.assert_allclose(stored, volume, rtol=1e-6)
    # the same map under another tag is refused
    other = _nifti(env.uploads / "float.nii.gz", volume)
    assert "whole numbers" in _refused(lib, env.store.save_label, "phantom_000", str(other), "final", {})


def test_multi_component_seg_nrrd_on_the_image_grid_accepted(lib: SimpleNamespace, env: SimpleNamespace) -> None:
    reference = sitk.ReadImage(env.store.get_image_uri("phantom_000"))
    components = [sitk.Cast(reference * 0, sitk.sitkUInt8) for _ in range(2)]
    seg = sitk.Compose(components)
    seg.CopyInformation(reference)
    path = env.uploads / "slicer.seg.nrrd"
    sitk.WriteImage(seg, str(path), useCompression=True)
    assert env.store.save_label("phantom_000", str(path), "final", {}) == "phantom_000"
    assert env.store.get_label_uri("phantom_000", "final").endswith("phantom_000.seg.nrrd")
    # a multi-component label in any other format is refused
    nrrd = env.uploads / "multi.nrrd"
    sitk.WriteImage(seg, str(nrrd))
    assert "component" in _refused(lib, env.store.save_label, "phantom_000", str(nrrd), "original", {})


# --- nothing half-stored ---------------------------------------------------------------------------------------------


def test_failed_save_leaves_previous_label_byte_identical(
    lib: SimpleNamespace, env: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = _label(env.uploads / "good.nii.gz", value=1)
    env.store.save_label("phantom_000", str(good), "final", {"v": 1})
    final = env.studies / "labels/final/phantom_000.nii.gz"
    before = final.read_bytes()
    # refused by validation
    bad = _nifti(env.uploads / "bad.nii.gz", np.full(SHAPE, 0.5, np.float32))
    _refused(lib, env.store.save_label, "phantom_000", str(bad), "final", {"v": 2})
    assert final.read_bytes() == before
    # the copy dies half-way: the final name still holds the previous label, no temporary file is left
    newer = _label(env.uploads / "newer.nii.gz", value=2)
    def dying_copy(src: object, dst: object, length: int = 0) -> None:
        dst.write(src.read(100))  # type: ignore[attr-defined]
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(shutil, "copyfileobj", dying_copy)  # what the datastore's atomic copy writes with
        with pytest.raises(OSError, match="disk full"):
            env.store.save_label("phantom_000", str(newer), "final", {"v": 3})
    assert final.read_bytes() == before
    assert sorted(os.listdir(final.parent)) == ["phantom_000.nii.gz"]
    assert env.store.get_label_info("phantom_000", "final")["v"] == 1


def test_replacing_a_labelled_image_with_another_grid_refused(lib: SimpleNamespace, env: SimpleNamespace) -> None:
    env.store.save_label("phantom_000", str(_label(env.uploads / "l.nii.gz")), "final", {})
    stored = (env.studies / "phantom_000.nii.gz").read_bytes()
    other = _image(env.uploads / "other.nii.gz", (16, 16, 8))
    assert "remove the image first" in _refused(lib, env.store.add_image, "phantom_000", str(other), {})
    assert (env.studies / "phantom_000.nii.gz").read_bytes() == stored
    # same grid: replaced, labels kept; another extension: the old file goes
    same = _image(env.uploads / "same.nii", SHAPE)
    env.store.add_image("phantom_000", str(same), {})
    assert (env.studies / "phantom_000.nii").read_bytes() == same.read_bytes()
    assert not (env.studies / "phantom_000.nii.gz").exists()
    assert env.store.get_label_by_image_id("phantom_000", "final") == "phantom_000"


def test_remove_image_removes_files_and_labels(env: SimpleNamespace) -> None:
    env.store.save_label("phantom_000", str(_label(env.uploads / "l.nii.gz")), "final", {})
    env.store.remove_image("phantom_000")
    assert env.store.list_images() == []
    assert not (env.studies / "phantom_000.nii.gz").exists()
    assert not (env.studies / "labels/final/phantom_000.nii.gz").exists()


def test_invalid_file_error_is_answered_400_with_its_message(lib: SimpleNamespace) -> None:
    err = lib.stored_files.InvalidStoredFileError("label grid (1, 1, 1) differs")
    assert isinstance(err, ValueError)
    assert error_answer(err) == (400, "label grid (1, 1, 1) differs")
