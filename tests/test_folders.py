"""Loaders for MSD task folders, KiTS folders and the prompt vocabulary."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from textdiffseg.data.folders import DatasetFolderError, case_at, load_folder, load_kits_folder, load_msd_folder
from textdiffseg.data.label_maps import PHANTOM_LABEL_NAMES, PHANTOM_TARGETS, phantom_targets
from textdiffseg.data.vocabulary import PromptVocabulary


def _write_nifti(path: Path, data: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.5, 1.0])), path)


def _tiny_msd(root: Path, task: str, labels: dict[str, str]) -> Path:
    folder = root / task
    training = []
    for i in range(2):
        _write_nifti(folder / "imagesTr" / f"case_{i}.nii.gz", np.zeros((8, 8, 4), np.int16))
        _write_nifti(folder / "labelsTr" / f"case_{i}.nii.gz", np.ones((8, 8, 4), np.uint8))
        training.append({"image": f"./imagesTr/case_{i}.nii.gz", "label": f"./labelsTr/case_{i}.nii.gz"})
    (folder / "dataset.json").write_text(json.dumps({"name": task, "labels": labels, "training": training}))
    return folder


def test_msd_pancreas_maps_values_to_prompts(tmp_path: Path) -> None:
    folder = _tiny_msd(tmp_path, "Task07_Pancreas", {"0": "background", "1": "pancreas", "2": "cancer"})
    cases = load_folder(folder)
    assert [c.case_id for c in cases] == ["case_0", "case_1"]
    assert cases[0].targets == {"pancreas": (1, 2), "pancreas tumor": (2,)}
    assert cases[0].image.is_file() and cases[0].label.is_file()


def test_unknown_msd_task_derives_targets_from_label_names(tmp_path: Path) -> None:
    folder = _tiny_msd(tmp_path, "Task99_Spleenish", {"0": "background", "1": "spleen", "2": "tumour"})
    assert load_msd_folder(folder)[0].targets == {"spleen": (1, 2), "spleen tumor": (2,)}


def test_msd_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    folder = _tiny_msd(tmp_path, "Task03_Liver", {"0": "background", "1": "liver", "2": "cancer"})
    (folder / "labelsTr" / "case_1.nii.gz").unlink()
    with pytest.raises(DatasetFolderError, match="file is missing"):
        load_msd_folder(folder)


def test_kits_folder_versions(tmp_path: Path) -> None:
    for i in range(2):
        _write_nifti(tmp_path / "k19" / f"case_{i:05d}" / "imaging.nii.gz", np.zeros((4, 4, 4), np.int16))
        _write_nifti(tmp_path / "k19" / f"case_{i:05d}" / "segmentation.nii.gz", np.zeros((4, 4, 4), np.uint8))
    _write_nifti(
        tmp_path / "k19" / "case_00002" / "imaging.nii.gz", np.zeros((4, 4, 4), np.int16)
    )  # unlabelled test case
    cases = load_folder(tmp_path / "k19")
    assert [c.case_id for c in cases] == ["case_00000", "case_00001"]
    assert cases[0].targets == {"kidney": (1, 2), "kidney tumor": (2,)}
    _write_nifti(tmp_path / "k21" / "case_00000" / "imaging.nii.gz", np.zeros((4, 4, 4), np.int16))
    _write_nifti(tmp_path / "k21" / "case_00000" / "aggregated_MAJ_seg.nii.gz", np.zeros((4, 4, 4), np.uint8))
    assert load_kits_folder(tmp_path / "k21")[0].targets["kidney cyst"] == (3,)


def test_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetFolderError, match="KiTS"):
        load_folder(tmp_path)


def test_phantom_folder_uses_phantom_targets(coarse_phantom_dir: Path) -> None:
    cases = load_folder(coarse_phantom_dir)
    assert len(cases) == 4 and cases[0].targets == dict(PHANTOM_TARGETS)


def test_case_at_names_one_case_and_says_what_there_is(coarse_phantom_dir: Path) -> None:
    cases = load_folder(coarse_phantom_dir)
    last = len(cases) - 1
    assert case_at(f"{coarse_phantom_dir}:{last}", "spleen") == cases[last]
    for spec in (f"{coarse_phantom_dir}:{last + 1}", str(coarse_phantom_dir), f"{coarse_phantom_dir}:one"):
        with pytest.raises(DatasetFolderError, match=f"has cases 0..{last}"):
            case_at(spec)
    with pytest.raises(DatasetFolderError, match="does not annotate 'urinary bladder'; it has aorta, colon"):
        case_at(f"{coarse_phantom_dir}:0", "urinary bladder")


def test_phantom_series_written_before_the_vessels_were_labelled_do_not_annotate_them() -> None:
    """A phantom folder whose dataset.json lists only values 1-10 (written before 2026-11-28) painted the aorta,
    IVC, stomach and gallbladder without labels: prompting them there must not teach an empty mask."""
    old = {"0": "background", **{str(v): PHANTOM_LABEL_NAMES[v] for v in range(1, 11)}}
    assert "aorta" not in phantom_targets(old) and set(phantom_targets(old)) == set(PHANTOM_TARGETS) - {
        "aorta",
        "inferior vena cava",
        "stomach",
        "gallbladder",
    }
    new = {"0": "background", **{str(v): name for v, name in PHANTOM_LABEL_NAMES.items()}}
    assert phantom_targets(new) == dict(PHANTOM_TARGETS)


def test_vocabulary_covers_every_target_and_knows_synonyms() -> None:
    vocab = PromptVocabulary.load()
    assert set(PHANTOM_TARGETS) <= set(vocab.names)
    assert vocab.canonical("Mass in the Pancreas ") == "pancreas tumor"
    assert vocab.canonical("a banana") is None
    assert vocab.index_map()["liver"] == 1
    assert vocab.name_of_index(2) == "spleen"
    with pytest.raises(KeyError, match="valid: 1.."):
        vocab.name_of_index(99)
    assert len(vocab.prompts_for("pancreas tumor")) >= 4


def test_bad_vocabulary_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "v.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read prompt vocabulary"):
        PromptVocabulary.load(bad)
