"""The phantom generator: determinism, geometry, HU per tissue, label coverage and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from textdiffseg.data.label_maps import PHANTOM_LABEL_NAMES
from textdiffseg.data.phantom import LABEL_VALUE, PhantomConfig, generate_case, main

COARSE = PhantomConfig(spacing=(4.0, 4.0, 4.0))


def test_same_seed_same_case_other_seed_other_case() -> None:
    a, b = generate_case(3, 1, COARSE), generate_case(3, 1, COARSE)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.label, b.label)
    c = generate_case(4, 1, COARSE)
    assert c.image.shape != a.image.shape or not np.array_equal(c.label, a.label)


def test_default_acquisition_ranges() -> None:
    case = generate_case(0, 0)
    zooms = np.abs(np.diag(case.affine)[:3])
    assert 0.6 <= zooms[0] == zooms[1] <= 1.0
    assert 1.5 <= zooms[2] <= 5.0
    assert case.image.shape[0] <= 512 and case.image.shape[2] <= 200
    assert case.image.dtype == np.int16 and case.label.dtype == np.uint8


def test_hu_per_tissue_is_realistic() -> None:
    case = generate_case(11, 2, COARSE)
    img, lab = case.image.astype(float), case.label

    def median(value: int) -> float:
        return float(np.median(img[lab == value]))

    assert 60 < median(1) < 150  # liver, enhanced
    assert 70 < median(2) < 170  # spleen
    assert 110 < median(3) < 320 and 110 < median(4) < 320  # kidneys (cortex + medulla)
    assert 50 < median(5) < 150  # pancreas
    outside = img[0, 0, :]  # the corner of the FOV is air
    assert outside.mean() < -900
    body = lab == 0
    assert (img[body] < -50).mean() > 0.2  # plenty of fat in the abdomen
    assert img.max() > 400  # bone


def test_aorta_and_ivc_are_labelled_tubes_in_front_of_the_spine() -> None:
    """The aorta on the patient's left of the IVC (world x, RAS), both in front of the vertebral bodies; the aorta
    enhanced in the default (contrast) series; each a tube through most of the scan range (organs painted later
    cover parts of them, the label follows what the image shows)."""
    for index in range(3):
        case = generate_case(11, index, COARSE)
        img, lab = case.image.astype(float), case.label
        aorta, ivc = lab == LABEL_VALUE["aorta"], lab == LABEL_VALUE["inferior vena cava"]
        world = lambda mask, a=case.affine: a[:3, :3] @ np.argwhere(mask).mean(0) + a[:3, 3]  # noqa: E731
        spine = (img > 400) & (lab == 0)
        assert world(aorta)[0] < world(ivc)[0]  # x to the patient's right: the IVC lies right of the aorta
        assert world(aorta)[1] > world(spine)[1] and world(ivc)[1] > world(spine)[1]  # anterior
        assert np.median(img[aorta]) > 150
        assert aorta.any(axis=(0, 1)).mean() > 0.6 and ivc.any(axis=(0, 1)).mean() > 0.6


def test_tumours_are_darker_than_their_host(coarse_phantom_dir: Path) -> None:
    for stem in ("phantom_000", "phantom_002"):
        img = np.asarray(nib.load(coarse_phantom_dir / "imagesTr" / f"{stem}.nii.gz").dataobj).astype(float)
        lab = np.asarray(nib.load(coarse_phantom_dir / "labelsTr" / f"{stem}.nii.gz").dataobj)
        for host, tumour in ((1, 7), (5, 9)):
            if (lab == tumour).sum() > 20:
                assert np.median(img[lab == tumour]) < np.median(img[lab == host]) - 15


def test_files_agree_in_geometry_and_every_label_appears(coarse_phantom_dir: Path) -> None:
    meta = json.loads((coarse_phantom_dir / "dataset.json").read_text())
    assert meta["numTraining"] == 4 and meta["labels"]["1"] == "liver"
    seen: set[int] = set()
    for entry in meta["training"]:
        img = nib.load(coarse_phantom_dir / entry["image"])
        lab = nib.load(coarse_phantom_dir / entry["label"])
        assert img.shape == lab.shape
        np.testing.assert_allclose(img.affine, lab.affine)
        assert entry["description"].startswith("Synthetic contrast-enhanced abdominal CT")
        seen |= set(np.unique(np.asarray(lab.dataobj)).tolist())
        stem = Path(entry["image"]).name
        assert (coarse_phantom_dir / stem).is_file() and (coarse_phantom_dir / "labels" / "final" / stem).is_file()
    context_only = {LABEL_VALUE["stomach"], LABEL_VALUE["gallbladder"]}  # painted with context rich / packed
    assert set(PHANTOM_LABEL_NAMES) - context_only <= seen


def test_some_cases_lack_a_tumour_type(coarse_phantom_dir: Path) -> None:
    meta = json.loads((coarse_phantom_dir / "dataset.json").read_text())
    counts = [
        sum(1 for e in meta["training"] if host in e["tumours"]) for host in ("liver", "kidney", "pancreas", "colon")
    ]
    assert all(c >= 1 for c in counts) and any(c < 4 for c in counts)


def test_cli_prints_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tmp_path / "p"), "--n", "1", "--seed", "5", "--spacing", "5", "5", "5"]) == 0
    out = capsys.readouterr().out
    assert "| phantom_000 | liver |" in out and "mean HU" in out
    assert (tmp_path / "p" / "imagesTr" / "phantom_000.nii.gz").is_file()


def test_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as err:
        main(["--out", "/tmp/never", "--n", "0"])
    assert err.value.code == 2
    assert "--n must be at least 1" in capsys.readouterr().err
