"""End to end: the TextDiffSeg MONAI Label app in a real ``monailabel start_server`` subprocess.

Driven with ``monailabel.client.MONAILabelClient`` (the code path of the 3D Slicer plugin) plus plain HTTP for the
endpoints the client lacks. The module-scoped fixture writes three 6-mm phantom cases (only ``phantom_000`` keeps its
``labels/final`` file, so two images are unlabeled), copies the app without ``model/``, and provides
``model/pretrained_textdiffseg.pt``:

* the shipped demo checkpoint (``apps/textdiffseg_app/model/pretrained_textdiffseg.pt``) when it exists, or the file
  named by ``TEXTDIFFSEG_APP_TEST_CHECKPOINT``; then the liver Dice quality gate (>= 0.8) is enforced;
* otherwise a tiny model trained here for 30 steps (``TEXTDIFFSEG_APP_TEST_CHECKPOINT=tiny`` forces this); then only
  geometry, label values and names are checked.

The tests run in file order and share the server: scoring runs before a label is saved, training runs last.
The server runs with ``OMP_NUM_THREADS=1``: on a shared 2-core machine, two processes each using two OpenMP threads
made one inference 25x slower (30 s instead of 1.2 s).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import requests
import torch
from monai.transforms import LoadImage
from monailabel.client import MONAILabelClient
from monailabel.client.client import MONAILabelClientException

from server_harness import ADMIN_CONF, DEMO_CHECKPOINT, ServerStartError, copy_app, start_server
from textdiffseg.data.label_maps import PHANTOM_TARGETS
from textdiffseg.data.phantom import PhantomConfig, write_dataset
from textdiffseg.data.vocabulary import PromptVocabulary
from textdiffseg.train_loop import TrainOptions, run_training

pytestmark = pytest.mark.slow

CHECKPOINT_ENV = "TEXTDIFFSEG_APP_TEST_CHECKPOINT"
MODEL = "textdiffseg"
INDEX = PromptVocabulary.load().index_map()
TRAIN_TIMEOUT_S = 600  # a hang guard, not a speed test: the run took 240+ s on a slow night (2026-11-27)
DICE_GATE = 0.8


@dataclass
class Server:
    """A running app server and what the tests need to check its answers."""

    url: str
    client: MONAILabelClient
    app_dir: Path
    studies: Path
    log: Path
    demo_checkpoint: bool  # True: a real checkpoint is served and the Dice gate applies

    def log_tail(self, lines: int = 60) -> str:
        """The end of the server log, for assertion messages."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def post(self, path: str, body: dict | None = None, timeout: float = 300) -> requests.Response:
        """JSON POST (the client has no scoring call)."""
        return requests.post(f"{self.url}{path}", json=body or {}, timeout=timeout)


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice overlap of two boolean masks (1.0 when both are empty)."""
    total = int(prediction.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(prediction, truth).sum()) / total


def _checkpoint_source() -> Path | None:
    """The real checkpoint to serve, or ``None`` to train a tiny one."""
    chosen = os.environ.get(CHECKPOINT_ENV, "")
    if chosen == "tiny":
        return None
    if chosen:
        return Path(chosen)
    return DEMO_CHECKPOINT if DEMO_CHECKPOINT.is_file() else None


def _train_tiny(studies: Path, out: Path) -> Path:
    """30 steps of the tiny preset on the phantom folder (one thread: kinder to a shared 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_training(TrainOptions(data=studies, out=out, steps=30, preset="tiny", progress=False))
    finally:
        torch.set_num_threads(threads)
    return out / "model.pt"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Phantom datastore + app copy + checkpoint, served on a free loopback port for this module."""
    tmp = tmp_path_factory.mktemp("appserver")
    studies = tmp / "studies"
    write_dataset(studies, n=3, seed=3, cfg=PhantomConfig(spacing=(6.0, 6.0, 6.0)))
    for unlabeled in ("phantom_001", "phantom_002"):
        (studies / "labels" / "final" / f"{unlabeled}.nii.gz").unlink()
    source = _checkpoint_source()
    checkpoint = source if source is not None else _train_tiny(studies, tmp / "run")
    app_dir = copy_app(tmp / "app", checkpoint)
    (tmp / "client").mkdir()
    # scoring ranks by two structures (a labelling campaign's choice), not all 23 (289 s on a 2-core box)
    conf = {
        "uncertainty_ensemble": "2",
        "uncertainty_prompts": "liver; spleen",
        "train_steps_per_epoch": "5",
        **ADMIN_CONF,
    }
    try:
        running = start_server(app_dir, studies, tmp, conf=conf)
    except ServerStartError as err:
        pytest.fail(str(err))
    try:
        client = MONAILabelClient(running.url, tmpdir=str(tmp / "client"))
        yield Server(running.url, client, app_dir, studies, running.log, demo_checkpoint=source is not None)
    finally:
        running.stop()


def _truth(server: Server, case: str) -> np.ndarray:
    return np.asarray(nib.load(server.studies / "labelsTr" / f"{case}.nii.gz").dataobj)


def _check_geometry(server: Server, result: str, case: str) -> np.ndarray:
    """The result's voxels, after checking it has the input's shape and affine."""
    image = nib.load(server.studies / f"{case}.nii.gz")
    label = nib.load(result)
    assert label.shape == image.shape
    np.testing.assert_allclose(label.affine, image.affine, atol=1e-3)
    return np.asarray(label.dataobj)


def test_info_lists_the_vocabulary_and_a_text_prompt_option(server: Server) -> None:
    info = server.client.info()
    model = info["models"][MODEL]
    assert model["type"] == "segmentation"
    assert model["labels"] == INDEX
    assert info["labels"] == list(INDEX)  # a list at the top level: OHIF's panel appends to it
    assert model["config"]["text_prompt"] == ""
    assert MODEL in info["trainers"]
    assert {"random", "first", "diffusion_uncertainty"} <= set(info["strategies"])
    assert {"dice", "diffusion_uncertainty"} <= set(info["scoring"])


def test_liver_prompt_returns_a_mask_on_the_input_grid(server: Server) -> None:
    result, params = server.client.infer(MODEL, "phantom_000", {"text_prompt": "liver", "result_extension": ".nii.gz"})
    voxels = _check_geometry(server, result, "phantom_000")
    assert params["label_names"] == {"liver": INDEX["liver"]}
    assert set(np.unique(voxels)) <= {0, INDEX["liver"]}
    assert (voxels == INDEX["liver"]).any(), server.log_tail()
    if server.demo_checkpoint:
        score = dice(voxels == INDEX["liver"], np.isin(_truth(server, "phantom_000"), PHANTOM_TARGETS["liver"]))
        assert score >= DICE_GATE, f"liver Dice {score:.3f} < {DICE_GATE}"


def test_two_prompts_give_one_label_map_named_by_prompt(server: Server) -> None:
    result, params = server.client.infer(MODEL, "phantom_000", {"text_prompt": "liver; spleen"})
    voxels = _check_geometry(server, result, "phantom_000")
    assert params["label_names"] == {"liver": INDEX["liver"], "spleen": INDEX["spleen"]}
    assert set(np.unique(voxels)) <= {0, INDEX["liver"], INDEX["spleen"]}
    assert voxels.dtype == np.uint8


def test_free_text_prompt_gets_the_next_value(server: Server) -> None:
    result, params = server.client.infer(MODEL, "phantom_000", {"text_prompt": "appendix"})
    voxels = _check_geometry(server, result, "phantom_000")
    assert params["label_names"] == {"appendix": len(INDEX) + 1}
    assert set(np.unique(voxels)) <= {0, len(INDEX) + 1}


def test_ohif_style_label_prompt_with_nrrd_output(server: Server) -> None:
    params = {"label_prompt": [INDEX["spleen"]], "result_extension": ".nrrd", "result_dtype": "uint8"}
    result, answer = server.client.infer(MODEL, "phantom_000", params)
    assert result.endswith(".nrrd")
    assert answer["label_names"] == {"spleen": INDEX["spleen"]}
    load = LoadImage(image_only=True)
    label, image = load(result), load(str(server.studies / "phantom_000.nii.gz"))
    assert tuple(label.shape) == tuple(image.shape)
    np.testing.assert_allclose(np.asarray(label.affine), np.asarray(image.affine), atol=1e-3)


def test_blank_prompt_is_a_400_and_the_server_keeps_working(server: Server) -> None:
    with pytest.raises(MONAILabelClientException) as caught:
        server.client.infer(MODEL, "phantom_000", {"text_prompt": "   "})
    assert "Status: 400" in caught.value.msg and "empty" in caught.value.msg
    bad = requests.post(
        f"{server.url}/infer/{MODEL}?image=phantom_000&output=json",
        files={"params": (None, json.dumps({"text_prompt": "liver", "ensemble": 0}))},
        timeout=60,
    )
    assert bad.status_code == 400 and "ensemble" in bad.json()["detail"]
    _, params = server.client.infer(MODEL, "phantom_000", {"text_prompt": "spleen"})
    assert params["label_names"] == {"spleen": INDEX["spleen"]}


def test_uncertainty_is_reported_and_saved_as_a_datastore_label(server: Server) -> None:
    _, params = server.client.infer(MODEL, "phantom_000", {"text_prompt": "liver", "uncertainty": True})
    assert set(params["uncertainty"]) == {"liver"} and 0.0 <= params["uncertainty"]["liver"] <= 1.0
    assert params["uncertainty_label"] == {"id": "phantom_000", "tag": "uncertainty"}
    assert not any(key.startswith("_") for key in params)
    saved = nib.load(server.studies / "labels" / "uncertainty" / "phantom_000.nii.gz")
    assert saved.shape == nib.load(server.studies / "phantom_000.nii.gz").shape


def test_uncertainty_scoring_ranks_the_unlabeled_images(server: Server) -> None:
    # 2 images x 2 prompts (conf uncertainty_prompts) x 2 samples; with every structure, 289 s on a 2-core box
    scored = server.post("/scoring/diffusion_uncertainty?run_sync=true", timeout=900)
    assert scored.status_code == 200, server.log_tail()
    scores = scored.json()
    assert set(scores) == {"phantom_001", "phantom_002"}
    picked = server.client.next_sample("diffusion_uncertainty", {})
    assert picked["id"] == max(scores, key=scores.get)
    assert "highest diffusion_uncertainty" in picked["selection"]
    for _ in range(3):  # MONAI Label's own Random fails when every candidate was served within the same second
        assert server.client.next_sample("random", {})["id"] in scores


def test_dice_scoring_compares_final_and_original_labels(server: Server) -> None:
    server.client.infer(MODEL, "phantom_000", {"text_prompt": "liver", "save_label": True})
    assert (server.studies / "labels" / "original" / "phantom_000.nii.gz").is_file()
    scored = server.post("/scoring/dice?run_sync=true")
    assert scored.status_code == 200, server.log_tail()
    assert 0.0 <= scored.json()["phantom_000"] <= 1.0


def test_saved_label_with_label_info_counts_as_labeled(server: Server, tmp_path: Path) -> None:
    truth = nib.load(server.studies / "labelsTr" / "phantom_001.nii.gz")
    values = np.asarray(truth.dataobj)
    corrected = np.zeros(values.shape, np.uint8)
    corrected[np.isin(values, PHANTOM_TARGETS["liver"])] = 1
    corrected[values == PHANTOM_TARGETS["spleen"][0]] = 2
    path = tmp_path / "phantom_001_label.nii.gz"
    nib.save(nib.Nifti1Image(corrected, truth.affine), path)
    label_info = [{"name": "Liver", "idx": 1}, {"name": "splenic parenchyma", "idx": 2}]
    saved = server.client.save_label("phantom_001", str(path), tag="final", params={"label_info": label_info})
    assert saved["label"] == "phantom_001"
    assert server.client.info()["datastore"]["completed"] == 2
    assert server.client.next_sample("diffusion_uncertainty", {})["id"] == "phantom_002"


def test_training_publishes_a_model_that_the_next_infer_serves(server: Server) -> None:
    published = server.app_dir / "model" / "textdiffseg.pt"
    assert not published.exists()
    # Learning rate 1e-9: the candidate computes what the served model does, so the publish gate (issue 14: no known
    # structure may drop by more than 0.02) lets it through whatever five steps would have done; this test is about
    # publishing and serving, test_publish_gate.py about refusing a worse model.
    # no rehearsal: this test is about publishing (tests/test_train_task.py checks the rehearsal cases)
    request = {"max_epochs": 1, "train_steps_per_epoch": 5, "learning_rate": 1e-9, "rehearsal": False}
    server.client.train_start(MODEL, request)
    deadline = time.monotonic() + TRAIN_TIMEOUT_S
    status = server.client.train_status()
    while status["status"] in ("SUBMITTED", "RUNNING") and time.monotonic() < deadline:
        time.sleep(2.0)
        status = server.client.train_status()
    assert status["status"] == "DONE", "\n".join(status.get("details", [])) + "\n" + server.log_tail()
    assert published.is_file()
    stats = server.client.info()["train_stats"][MODEL]
    assert stats["status"] == "DONE" and stats["cases"] == 2 and stats["steps"] == 5
    assert "spleen" in stats["structures"]
    assert stats["published"] and stats["publish_gate"]["publish"] is True, stats
    result, params = server.client.infer(MODEL, "phantom_000", {"text_prompt": "liver"})
    _check_geometry(server, result, "phantom_000")
    assert params["label_names"] == {"liver": INDEX["liver"]}
    assert "serving checkpoint" in server.log.read_text() and str(published) in server.log.read_text()
