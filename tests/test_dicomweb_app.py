"""The app on a real Orthanc PACS (``--studies http://127.0.0.1:<port>/dicom-web``), end to end over HTTP.

``scripts/pacs.sh`` starts Orthanc and loads two 6-mm phantom cases as DICOM CT series (``pacs.sh load``: phantom
generator -> ``textdiffseg.data.dicom_export`` -> STOW-RS); the server serves the shipped demo checkpoint. Checked:
the datastore lists the series; a text prompt gives a mask on the series' grid that overlaps the phantom truth (and
"left kidney" finds the patient's left kidney, not the right one: the RAS/LPS check); a saved final label becomes a
DICOM-SEG in Orthanc whose segments are named after the prompts; a DICOM-SEG stored by another client is picked up
too; training uses both, with structure names from the SEG segment labels. Tests share the server, in file order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from monailabel.client import MONAILabelClient
from pacs_harness import Pacs, start_pacs, tag_value

from server_harness import ADMIN_CONF, DEMO_CHECKPOINT, ServerStartError, copy_app, free_port, start_server
from textdiffseg.data.dicom_seg import write_dicom_seg
from textdiffseg.data.label_maps import PHANTOM_TARGETS
from textdiffseg.data.vocabulary import PromptVocabulary

pytestmark = pytest.mark.slow

MODEL = "textdiffseg"
INDEX = PromptVocabulary.load().index_map()
CASES = ("phantom_000", "phantom_001")
PATIENT_ID, SERIES_UID, STUDY_UID = "00100020", "0020000E", "0020000D"


@dataclass
class Setup:
    """Orthanc, the server on it, and where the phantom truth is."""

    pacs: Pacs
    url: str
    series: dict[str, str]  # phantom case -> SeriesInstanceUID
    studies: dict[str, str]  # phantom case -> StudyInstanceUID
    phantom: Path  # the NIfTI phantom folder pacs.sh exported
    log: Path

    def log_tail(self, lines: int = 60) -> str:
        """The end of the server log, for assertion messages."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def infer(self, case: str, params: dict, output: str = "image") -> requests.Response:
        """``POST /infer/textdiffseg`` on the case's series."""
        answer = requests.post(
            f"{self.url}/infer/{MODEL}",
            params={"image": self.series[case], "output": output},
            files={"params": (None, json.dumps(params))},
            timeout=600,
        )
        assert answer.status_code == 200, f"{answer.status_code} {answer.text[:300]}\n{self.log_tail()}"
        return answer

    def truth(self, case: str) -> nib.Nifti1Image:
        """The phantom's label map (original NIfTI geometry)."""
        return nib.load(self.phantom / "labelsTr" / f"{case}.nii.gz")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """Orthanc loaded by ``scripts/pacs.sh`` + the app on it (DICOMweb cache under the test's temp folder)."""
    tmp = tmp_path_factory.mktemp("dicomweb")
    pacs = start_pacs(tmp / "orthanc", free_port())
    try:
        pacs.script("load", PACS_CASES=str(len(CASES)), PACS_SEED="0", PACS_SPACING="6 6 6")
        found = {tag_value(s, PATIENT_ID): s for s in pacs.series(Modality="CT")}
        assert set(found) == set(CASES), found.keys()
        app_dir = copy_app(tmp / "app", DEMO_CHECKPOINT)
        env = {"MONAI_LABEL_DICOMWEB_CACHE_PATH": str(tmp / "dicom_cache")}
        try:
            # publish_gate false: the two-step run is published unscored (the gate has its own tests)
            conf = {"train_steps_per_epoch": "2", "publish_gate": "false", **ADMIN_CONF}
            server = start_server(app_dir, pacs.dicomweb, tmp, conf=conf, env=env)
        except ServerStartError as err:
            pytest.fail(str(err))
        try:
            yield Setup(
                pacs,
                server.url,
                {case: tag_value(s, SERIES_UID) for case, s in found.items()},
                {case: tag_value(s, STUDY_UID) for case, s in found.items()},
                tmp / "orthanc" / "phantom",
                server.log,
            )
        finally:
            server.stop()
    finally:
        pacs.stop()


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean masks."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def _on_truth_grid(result: Path, truth: nib.Nifti1Image) -> np.ndarray:
    """The result's voxels, after checking that it covers the phantom's grid (same world geometry, any axis order)."""
    mask = nib.as_closest_canonical(nib.load(result))
    canonical_truth = nib.as_closest_canonical(truth)
    assert mask.shape == canonical_truth.shape
    np.testing.assert_allclose(mask.affine, canonical_truth.affine, atol=1e-2)
    return np.asarray(mask.dataobj)


def _save(tmp: Path, answer: requests.Response) -> Path:
    path = tmp / "result.nii.gz"
    path.write_bytes(answer.content)
    return path


def test_datastore_lists_the_pacs_series(setup: Setup) -> None:
    stats = requests.get(f"{setup.url}/datastore/", params={"output": "stats"}, timeout=60).json()
    assert stats["total"] == len(CASES) and stats["completed"] == 0, stats
    first = requests.post(f"{setup.url}/activelearning/first", json={}, timeout=60).json()
    assert first["id"] in setup.series.values()


def test_text_prompt_mask_is_aligned_with_the_series(setup: Setup, tmp_path: Path) -> None:
    answer = setup.infer("phantom_000", {"text_prompt": "liver", "result_extension": ".nii.gz"})
    truth = setup.truth("phantom_000")
    mask = _on_truth_grid(_save(tmp_path, answer), truth)
    labels = np.asarray(nib.as_closest_canonical(truth).dataobj)
    assert set(np.unique(mask)) <= {0, INDEX["liver"]}
    score = dice(mask == INDEX["liver"], np.isin(labels, PHANTOM_TARGETS["liver"]))
    assert score >= 0.7, f"liver Dice {score:.3f} on the PACS series\n{setup.log_tail()}"
    cached = requests.get(f"{setup.url}/datastore/", params={"output": "all"}, timeout=60).json()
    assert setup.series["phantom_000"] in cached["objects"]


def test_left_kidney_is_on_the_patients_left(setup: Setup, tmp_path: Path) -> None:
    answer = setup.infer("phantom_001", {"text_prompt": "left kidney", "result_extension": ".nii.gz"})
    truth = setup.truth("phantom_001")
    mask = _on_truth_grid(_save(tmp_path, answer), truth) == INDEX["left kidney"]
    labels = np.asarray(nib.as_closest_canonical(truth).dataobj)
    left, right = dice(mask, labels == 3), dice(mask, labels == 4)
    assert left >= 0.5 and left > 3 * right, f"left kidney Dice {left:.3f}, against the right kidney {right:.3f}"


def _save_final_label(setup: Setup, path: Path, label_info: list[dict], case: str = "phantom_000") -> requests.Response:
    """``PUT /datastore/label`` of a NIfTI file as the case's final label, named by ``label_info``."""
    with path.open("rb") as handle:
        return requests.put(
            f"{setup.url}/datastore/label",
            params={"image": setup.series[case], "tag": "final"},
            files={"label": ("label.nii.gz", handle), "params": (None, json.dumps({"label_info": label_info}))},
            timeout=300,
        )


def test_saved_final_label_becomes_a_dicom_seg_named_after_the_prompts(setup: Setup, tmp_path: Path) -> None:
    client = MONAILabelClient(setup.url, tmpdir=str(tmp_path))
    result, params = client.infer(
        MODEL, setup.series["phantom_000"], {"text_prompt": "liver; spleen", "result_extension": ".nii.gz"}
    )
    names = params["label_names"]
    assert names == {"liver": INDEX["liver"], "spleen": INDEX["spleen"]}
    label = Path(result)
    label_info = [{"name": name, "idx": idx} for name, idx in names.items()]
    empty = tmp_path / "empty.nii.gz"  # a label with no labelled voxel is the client's mistake: a 400, nothing stored
    answer = nib.load(label)
    nib.save(nib.Nifti1Image(np.zeros(answer.shape, np.uint8), answer.affine), empty)
    refused = _save_final_label(setup, empty, label_info)
    assert refused.status_code == 400 and "empty" in refused.json()["detail"], refused.text[:300]
    assert not setup.pacs.series(Modality="SEG")
    saved = _save_final_label(setup, label, label_info)
    assert saved.status_code == 200, f"{saved.text[:300]}\n{setup.log_tail()}"
    segs = setup.pacs.series(Modality="SEG")
    assert len(segs) == 1
    seg = _fetch_seg(setup, segs[0])
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == setup.series["phantom_000"]
    # segments 1, 2, ... (DICOM numbers them consecutively) named after the prompts, on the CT's frame of reference
    assert [(int(s.SegmentNumber), str(s.SegmentLabel)) for s in seg.SegmentSequence] == [(1, "liver"), (2, "spleen")]
    assert {str(s.SegmentAlgorithmType) for s in seg.SegmentSequence} == {"MANUAL"}
    ct = setup.pacs.series(Modality="CT", SeriesInstanceUID=setup.series["phantom_000"])[0]
    ct_instance = DICOMwebClient(url=setup.pacs.dicomweb).retrieve_series_metadata(
        tag_value(ct, STUDY_UID), tag_value(ct, SERIES_UID)
    )[0]
    assert seg.FrameOfReferenceUID == tag_value(ct_instance, "00200052")
    stats = requests.get(f"{setup.url}/datastore/", timeout=60).json()
    assert stats["completed"] == 1, stats


def test_training_uses_saved_and_foreign_dicom_seg_labels(setup: Setup, tmp_path: Path) -> None:
    # Another client (a viewer, another server) stores a SEG of phantom_001 that marks the left kidney with value 7,
    # the phantom's "liver tumor" value: only the SEG's segment label can make training call it "left kidney". Its
    # second segment, "ribs", names a structure the served model never learned (issue 14 item 4); both CTs get it,
    # so it is trained whichever of the two the run holds out for validation.
    for case, segments in (("phantom_001", {7: "left kidney", 9: "ribs"}), ("phantom_000", {9: "ribs"})):
        truth = setup.truth(case)
        bone = np.asarray(nib.load(setup.phantom / "imagesTr" / f"{case}.nii.gz").dataobj) > 250
        kidney = np.asarray(truth.dataobj) == 3 if 7 in segments else np.zeros(truth.shape, bool)
        relabelled = np.where(kidney, 7, np.where(bone, 9, 0)).astype(np.uint8)
        assert (relabelled == 9).sum() > 50
        nib.save(nib.Nifti1Image(relabelled, truth.affine), tmp_path / f"{case}_foreign.nii.gz")
        seg_file = tmp_path / f"{case}_foreign_seg.dcm"
        write_dicom_seg(tmp_path / f"{case}_foreign.nii.gz", setup.pacs.folder / "dicom" / case, segments, seg_file)
        DICOMwebClient(url=setup.pacs.dicomweb).store_instances([pydicom.dcmread(str(seg_file))])
    assert len(setup.pacs.series(Modality="SEG")) == 3
    unknown = setup.infer("phantom_001", {"text_prompt": "rib cage"}, output="json").json()
    assert unknown["prompts"][0]["known"] is False, unknown
    body = {"name": "dicom_seg_run", "max_epochs": 1, "train_steps_per_epoch": 2, "multi_gpu": False}
    answer = requests.post(f"{setup.url}/train/{MODEL}", params={"run_sync": "true"}, json=body, timeout=900)
    assert answer.status_code == 200, f"{answer.text[:500]}\n{setup.log_tail()}"
    stats = answer.json()
    assert stats["status"] == "DONE" and stats["cases"] == 2, stats
    # phantom_000: the label_info saved with the label; phantom_001: the foreign SEG's segment labels
    assert stats["structures"] == ["left kidney", "liver", "ribs", "spleen"], stats
    assert stats["published"], stats
    log = setup.log.read_text()
    assert log.count("structure(s) from label_info") >= 2 and "structure(s) from phantom" not in log

    # the published model answers the synonym as the learned structure; saved, its SEG segment is named after it
    client = MONAILabelClient(setup.url, tmpdir=str(tmp_path))
    result, params = client.infer(
        MODEL, setup.series["phantom_001"], {"text_prompt": "rib cage", "result_extension": ".nii.gz"}
    )
    assert params["label_names"] == {"ribs": INDEX["ribs"]}, params
    assert params["prompts"][0]["understood_as"] == "ribs" and "warning" not in params, params
    mask = nib.load(result)
    corrected = np.asarray(mask.dataobj).astype(np.uint8)
    corrected[tuple(n // 2 for n in mask.shape)] = INDEX["ribs"]  # the annotator's touch: a two-step mask may be empty
    nib.save(nib.Nifti1Image(corrected, mask.affine), tmp_path / "ribs.nii.gz")
    before = {tag_value(seg, SERIES_UID) for seg in setup.pacs.series(Modality="SEG")}
    label_info = [{"name": name, "idx": idx} for name, idx in params["label_names"].items()]
    saved = _save_final_label(setup, tmp_path / "ribs.nii.gz", label_info, "phantom_001")
    assert saved.status_code == 200, f"{saved.text[:300]}\n{setup.log_tail()}"
    new = [seg for seg in setup.pacs.series(Modality="SEG") if tag_value(seg, SERIES_UID) not in before]
    assert len(new) == 1
    assert [str(segment.SegmentLabel) for segment in _fetch_seg(setup, new[0]).SegmentSequence] == ["ribs"]


def _fetch_seg(setup: Setup, seg_series: dict) -> pydicom.Dataset:
    """The (single) instance of a SEG series, by WADO-RS."""
    client = DICOMwebClient(url=setup.pacs.dicomweb)
    instances = client.retrieve_series(tag_value(seg_series, STUDY_UID), tag_value(seg_series, SERIES_UID))
    assert len(instances) == 1
    return instances[0]
