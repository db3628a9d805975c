"""The REST sequence of 3D Slicer's MONAILabel module for a volume that is not in the datastore, against the app.

What the module does (``plugins/slicer/MONAILabel/MONAILabel.py``, MONAI Label 0.8.5), step by step, with the same
``monailabel.client.MONAILabelClient`` calls its logic makes:

1. connect: ``GET /info/``; the options table shows ``info.models.textdiffseg.config`` and the user types the prompt
   into its ``text_prompt`` cell. ``getParamsFromConfig`` sends back every config key, lists collapsed to their
   first element, plus ``result_extension=.nrrd``/``result_dtype=uint8`` and ``client_id`` added by the client;
2. "Run" on a local volume: ``onUploadImage(session=True)`` saves the volume as ``.nrrd`` and ``PUT /session/``;
   then ``POST /infer/textdiffseg?image=<volume name>&session_id=<id>`` (``GET /session/<id>`` on later runs);
   segments are created in the order of ``label_names`` values and named after them;
3. "Submit Label": the session volume is uploaded to the datastore (``PUT /datastore/image?image=<name>``), the
   segments are exported as a label map whose values are the segments' positions (1, 2, ...) and sent with
   ``label_info = [{"name": segment, "idx": position}]`` (``PUT /datastore/label?image=<name>``); then ``GET /info/``.

The datastore is a local folder (one unlabelled phantom); the uploaded volume is another phantom case.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests
import SimpleITK as sitk  # noqa: N813
from monailabel.client import MONAILabelClient

from server_harness import ADMIN_CONF, DEMO_CHECKPOINT, ServerStartError, copy_app, start_server
from textdiffseg.click_edit import DEFAULT_CLICK_EDITS
from textdiffseg.data.phantom import PhantomConfig, write_dataset
from textdiffseg.data.vocabulary import PromptVocabulary

pytestmark = pytest.mark.slow

MODEL = "textdiffseg"
INDEX = PromptVocabulary.load().index_map()
PROMPT = "spleen; left kidney"
VOLUME_NAME = "local_ct"  # Slicer's image id for an uploaded volume is the volume node's name


@dataclass
class Slicer:
    """The server, a client like Slicer's, the datastore folder and the local volume Slicer would have open."""

    url: str
    client: MONAILabelClient
    studies: Path
    volume: Path  # the local volume, saved as .nrrd the way Slicer saves a node before uploading it
    log: Path


@pytest.fixture(scope="module")
def slicer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slicer]:
    """Local datastore with one unlabelled phantom, the demo checkpoint, and a second phantom as the local volume."""
    tmp = tmp_path_factory.mktemp("slicer")
    cfg = PhantomConfig(spacing=(6.0, 6.0, 6.0))
    studies = tmp / "studies"
    write_dataset(studies, n=1, seed=11, cfg=cfg)
    (studies / "labels" / "final" / "phantom_000.nii.gz").unlink()
    write_dataset(tmp / "local", n=1, seed=12, cfg=cfg)
    volume = tmp / "slicer_tmp" / "volume.nrrd"
    volume.parent.mkdir()
    sitk.WriteImage(sitk.ReadImage(str(tmp / "local" / "phantom_000.nii.gz")), str(volume))
    app_dir = copy_app(tmp / "app", DEMO_CHECKPOINT)
    try:
        # publish_gate false: the two-step runs here are published unscored (the gate has its own tests)
        conf = {"train_steps_per_epoch": "2", "publish_gate": "false", **ADMIN_CONF}
        server = start_server(app_dir, studies, tmp, conf=conf)
    except ServerStartError as err:
        pytest.fail(str(err))
    try:
        client = MONAILabelClient(server.url, tmpdir=str(tmp / "slicer_tmp"), client_id="slicer-test")
        yield Slicer(server.url, client, studies, volume, server.log)
    finally:
        server.stop()


def params_from_config(config: dict, edits: dict) -> dict:
    """Slicer's ``getParamsFromConfig``: every config key (lists collapsed to the first item), with the user's edits."""
    params = {key: (value[0] if isinstance(value, list) and value else value) for key, value in config.items()}
    params.update(edits)
    return params


def _same_geometry(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-5)


def test_slicer_clicks_on_a_text_only_checkpoint_edit_the_mask_near_them(slicer: Slicer, tmp_path: Path) -> None:
    """Slicer's control points (``foreground``/``background``) reach the demo checkpoint, which has no click branch:
    the click edits put the foreground point in the mask, take the background point out of it, and change nothing
    farther than their radius (``tests/test_click_server.py`` runs the sequence with a click checkpoint)."""
    client = slicer.client
    session_id = client.create_session(str(slicer.volume))["session_id"]
    params = params_from_config(client.info()["models"][MODEL]["config"], {"text_prompt": "spleen"})
    params["result_extension"] = ".nii.gz"

    def mask(clicks: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
        response = requests.post(
            f"{slicer.url}/infer/{MODEL}",
            params={"image": VOLUME_NAME, "session_id": session_id, "output": "image"},
            files={"params": (None, json.dumps({**params, **clicks}))},
            timeout=600,
        )
        assert response.status_code == 200, f"{response.text[:300]}\n{slicer.log.read_text()[-2000:]}"
        (tmp_path / name).write_bytes(response.content)
        image = sitk.ReadImage(str(tmp_path / name))
        return sitk.GetArrayFromImage(image).transpose(2, 1, 0), np.asarray(image.GetSpacing())

    before, spacing = mask({}, "text.nii.gz")
    inside = [int(v) for v in np.argwhere(before > 0)[0]]  # a voxel the text-only mask holds
    after, _ = mask({"foreground": [[10, 10, 10]], "background": [inside]}, "clicked.nii.gz")
    assert after[10, 10, 10] > 0 and after[tuple(inside)] == 0
    changed = np.argwhere(before != after)
    distance = np.min([np.sqrt((((changed - np.array(c)) * spacing) ** 2).sum(1)) for c in ([10, 10, 10], inside)], 0)
    assert len(changed) and distance.max() <= DEFAULT_CLICK_EDITS.radius_mm + spacing.max(), distance.max()
    assert client.info()["models"]["textdiffseg_clicks"]["type"] == "vista3d"  # OHIF's Point Prompts tab lists it


def test_slicer_session_infer_then_submit_label(slicer: Slicer, tmp_path: Path) -> None:
    """Infer, then Submit Label with the inferred segments plus one the user painted and named in free text
    ("Ribs": a vocabulary structure the demo checkpoint never learned, issue 14 item 4). Before training "ribs" is an
    empty mask with a warning; after ``/train`` the published model answers "ribs" and its synonym "rib cage" as
    the structure it learned (how well: ``benchmarks/new_structure.py``; this run is two steps)."""
    client = slicer.client
    info = client.info()
    before = info["datastore"]
    assert before["total"] == 1 and before["completed"] == 0, before

    # 2. Run on the local volume: a session, then infer with the options table's values
    session_id = client.create_session(str(slicer.volume))["session_id"]
    assert client.get_session(session_id)["name"] == session_id  # what Slicer checks before every later run

    def infer(prompt: str) -> tuple[str, dict]:
        params = params_from_config(info["models"][MODEL]["config"], {"text_prompt": prompt})
        return client.infer(MODEL, VOLUME_NAME, params, session_id=session_id)

    result, answer = infer(PROMPT)
    assert answer["label_names"] == {"spleen": INDEX["spleen"], "left kidney": INDEX["left kidney"]}
    assert result.endswith(".nrrd")
    mask, volume = sitk.ReadImage(result), sitk.ReadImage(str(slicer.volume))
    _same_geometry(mask, volume)
    values = sitk.GetArrayFromImage(mask)
    assert set(np.unique(values)) <= {0, INDEX["spleen"], INDEX["left kidney"]}
    assert (values == INDEX["spleen"]).any() and (values == INDEX["left kidney"]).any()
    unknown = infer("ribs")[1]
    assert unknown["prompts"][0]["known"] is False and "warning" in unknown, unknown

    # 3. Submit Label: upload the session volume, export segments as positions 1..N with their names; the user
    # painted one more segment, "Ribs" (the phantom's bones stand for it)
    segments = sorted(answer["label_names"].items(), key=lambda item: item[1])
    exported = np.zeros_like(values)
    for position, (_, value) in enumerate(segments, start=1):
        exported[values == value] = position
    painted = (sitk.GetArrayFromImage(volume) > 250) & (exported == 0)
    assert painted.sum() > 50
    exported[painted] = len(segments) + 1
    label_info = [{"name": name, "idx": position} for position, (name, _) in enumerate(segments, start=1)]
    label_info.append({"name": "Ribs", "idx": len(segments) + 1})
    label_file = tmp_path / "label.nrrd"
    label_image = sitk.GetImageFromArray(exported)
    label_image.CopyInformation(volume)
    sitk.WriteImage(label_image, str(label_file))
    client.upload_image(str(slicer.volume), VOLUME_NAME)
    saved = client.save_label(VOLUME_NAME, str(label_file), params={"label_info": label_info})
    assert saved.get("image") == VOLUME_NAME, saved

    after = client.info()["datastore"]
    assert after["total"] == 2 and after["completed"] == 1, after
    stored = client.datastore()["objects"][VOLUME_NAME]["labels"]["final"]
    assert stored["info"]["label_info"] == label_info, stored
    assert (slicer.studies / "labels" / "final" / f"{VOLUME_NAME}{stored['ext']}").is_file()

    # the trainer names the submitted values from label_info (value 1 is "spleen" here, "liver" in the vocabulary)
    body = {"name": "slicer_run", "max_epochs": 1, "train_steps_per_epoch": 1, "multi_gpu": False}
    trained = requests.post(f"{slicer.url}/train/{MODEL}", params={"run_sync": "true"}, json=body, timeout=900)
    assert trained.status_code == 200, f"{trained.text[:300]}\n{slicer.log.read_text()[-3000:]}"
    stats = trained.json()
    assert stats["cases"] == 1 and stats["structures"] == ["left kidney", "ribs", "spleen"], json.dumps(stats)
    assert stats["published"] and stats["teacher_cases"] == 1, json.dumps(stats)[:2000]
    for prompt in ("ribs", "rib cage"):
        learned = infer(prompt)[1]
        assert learned["label_names"] == {"ribs": INDEX["ribs"]}, learned
        assert learned["prompts"][0]["understood_as"] == "ribs" and learned["prompts"][0]["known"], learned
        assert "warning" not in learned, learned
