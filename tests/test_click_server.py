"""Clicks over REST against a running app: OHIF's Point Prompts request, 3D Slicer's session sequence, and 400s.

The served checkpoint is the demo one given a click branch whose decoder part has fixed random weights: its clicks
change the mask (as a trained branch's would, though not for the better), so what this checks is the plumbing
(clicks reach the model on the right voxels) and the locality (nothing changes beyond the click radius).
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
import torch
from monailabel.client import MONAILabelClient
from scipy import ndimage

from server_harness import DEMO_CHECKPOINT, ServerStartError, copy_app, start_server
from textdiffseg.checkpoint import load_checkpoint, save_checkpoint
from textdiffseg.click_branch import add_click_branch
from textdiffseg.clicks import CLICK_RADIUS_MM
from textdiffseg.data.phantom import PhantomConfig, write_dataset
from textdiffseg.data.vocabulary import PromptVocabulary

pytestmark = pytest.mark.slow

INDEX = PromptVocabulary.load().index_map()
SPACING = 6.0
CROP = (slice(5, 55), slice(5, 55), slice(8, 46))  # one sliding window of the demo model: quick on 2 cores


@dataclass
class ClickServer:
    """The server, a client, the image id in the datastore, its spleen centre and the local volume Slicer has."""

    url: str
    client: MONAILabelClient
    image_id: str
    spleen_centre: list[int]
    volume: Path
    log: Path


def _click_checkpoint(path: Path) -> Path:
    model, _ = load_checkpoint(DEMO_CHECKPOINT)
    model = add_click_branch(model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for conv in model.click_decoder.convs:
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * 5.0)
    return save_checkpoint(path, model)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickServer]:
    """A datastore with one cropped phantom, the same phantom as Slicer's local volume, a click checkpoint."""
    tmp = tmp_path_factory.mktemp("clicks")
    write_dataset(tmp / "phantom", n=1, seed=12, cfg=PhantomConfig(spacing=(SPACING,) * 3))
    image = sitk.ReadImage(str(tmp / "phantom" / "phantom_000.nii.gz"))
    label = sitk.ReadImage(str(tmp / "phantom" / "labels" / "final" / "phantom_000.nii.gz"))
    index = [CROP[0].start, CROP[1].start, CROP[2].start]
    size = [CROP[0].stop - CROP[0].start, CROP[1].stop - CROP[1].start, CROP[2].stop - CROP[2].start]
    image, label = (sitk.RegionOfInterest(x, size, index) for x in (image, label))
    studies = tmp / "studies"
    studies.mkdir()
    sitk.WriteImage(image, str(studies / "ct_000.nii.gz"))
    volume = tmp / "slicer_tmp" / "volume.nrrd"
    volume.parent.mkdir()
    sitk.WriteImage(image, str(volume))
    spleen = sitk.GetArrayFromImage(label).transpose(2, 1, 0) == 2  # voxel order i, j, k
    centre = [int(round(v)) for v in ndimage.center_of_mass(spleen)]
    app_dir = copy_app(tmp / "app", None)
    _click_checkpoint(app_dir / "model" / "pretrained_textdiffseg.pt")
    try:
        server = start_server(app_dir, studies, tmp)
    except ServerStartError as err:
        pytest.fail(str(err))
    try:
        client = MONAILabelClient(server.url, tmpdir=str(tmp / "slicer_tmp"), client_id="click-test")
        yield ClickServer(server.url, client, "ct_000", centre, volume, server.log)
    finally:
        server.stop()


def _infer(served: ClickServer, model: str, params: dict, output: str = "all") -> requests.Response:
    return requests.post(
        f"{served.url}/infer/{model}",
        params={"image": served.image_id, "output": output},
        files={"params": (None, json.dumps(params))},
        timeout=600,
    )


def _mask(served: ClickServer, model: str, params: dict, tmp_path: Path, name: str) -> np.ndarray:
    response = _infer(served, model, {**params, "result_extension": ".nii.gz"}, output="image")
    assert response.status_code == 200, f"{response.text[:300]}\n{served.log.read_text()[-2000:]}"
    path = tmp_path / f"{name}.nii.gz"
    path.write_bytes(response.content)
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path))).transpose(2, 1, 0)


def _changed_within_radius(before: np.ndarray, after: np.ndarray, clicks: list[list[int]]) -> None:
    changed = np.argwhere(before != after)
    assert len(changed), "the clicks changed nothing"
    distance = np.min([np.sqrt((((changed - np.array(c)) * SPACING) ** 2).sum(1)) for c in clicks], axis=0)
    assert distance.max() <= CLICK_RADIUS_MM + 2 * SPACING, distance.max()  # + trilinear reach of the 5 mm grid


def test_info_lists_the_model_for_text_and_for_point_prompts(served: ClickServer) -> None:
    models = served.client.info()["models"]
    assert models["textdiffseg"]["type"] == "segmentation"  # Auto-Segmentation, Class Prompts and Slicer
    assert models["textdiffseg_clicks"]["type"] == "vista3d"  # OHIF's Point Prompts tab
    assert models["textdiffseg_clicks"]["labels"] == models["textdiffseg"]["labels"]


def test_ohif_point_prompts_change_the_mask_near_the_click_only(served: ClickServer, tmp_path: Path) -> None:
    # what OHIF sends for a vista3d model: the options config, points, point_labels and the chosen class
    config = served.client.info()["models"]["textdiffseg_clicks"]["config"]
    base = {**config, "label_prompt": [INDEX["spleen"]], "result_compress": False}
    text = _mask(served, "textdiffseg_clicks", base, tmp_path, "text")
    assert (text == INDEX["spleen"]).sum() > 100
    points = [served.spleen_centre]
    clicked = _mask(served, "textdiffseg_clicks", {**base, "points": points, "point_labels": [1]}, tmp_path, "click")
    _changed_within_radius(text, clicked, points)
    assert set(np.unique(clicked)) <= {0, INDEX["spleen"]}


@pytest.mark.parametrize(
    ("clicks", "message"),
    [
        ({"points": [[1, 2, 300]], "point_labels": [1]}, "outside the image"),
        ({"points": [[1, 2, 3]], "point_labels": [1, 0]}, "one per point"),
        ({"points": [[1, 2]], "point_labels": [1]}, "three voxel indices"),
        ({"points": [[1, 2, 3.5]], "point_labels": [1]}, "integers"),
        ({"foreground": [[1, 2, 3]] * 65}, "limit is 64"),
    ],
)
def test_malformed_points_are_a_400(served: ClickServer, clicks: dict, message: str) -> None:
    response = _infer(served, "textdiffseg", {"text_prompt": "spleen", **clicks})
    assert response.status_code == 400 and message in response.json()["detail"], response.text[:300]


def test_slicer_session_sequence_with_clicks(served: ClickServer, tmp_path: Path) -> None:
    """Slicer: connect, upload the local volume as a session, infer with the typed prompt and its control points
    (``foreground``/``background`` voxel indices, as its deepgrow logic sends them)."""
    client = served.client
    info = client.info()
    session_id = client.create_session(str(served.volume))["session_id"]
    params = {k: (v[0] if isinstance(v, list) and v else v) for k, v in info["models"]["textdiffseg"]["config"].items()}
    params.update(text_prompt="spleen; liver", result_extension=".nrrd", result_dtype="uint8")
    text_file, text_answer = client.infer("textdiffseg", "local_ct", params, session_id=session_id)
    text = sitk.GetArrayFromImage(sitk.ReadImage(text_file)).transpose(2, 1, 0)
    background = [served.spleen_centre[0] - 4, *served.spleen_centre[1:]]
    clicks = {"foreground": [served.spleen_centre], "background": [background]}
    click_file, answer = client.infer("textdiffseg", "local_ct", {**params, **clicks}, session_id=session_id)
    clicked = sitk.GetArrayFromImage(sitk.ReadImage(click_file)).transpose(2, 1, 0)
    assert answer["label_names"] == text_answer["label_names"] == {"spleen": INDEX["spleen"], "liver": INDEX["liver"]}
    edited = answer["clicks"].pop("edited_voxels")
    assert answer["clicks"] == {"prompt": "spleen", "foreground": 1, "background": 1} and edited >= 0
    assert clicked[tuple(served.spleen_centre)] == INDEX["spleen"] and clicked[tuple(background)] != INDEX["spleen"]
    _changed_within_radius(text, clicked, [served.spleen_centre, background])
    # the clicks are the spleen's: the liver (the second prompt) is exactly its text-only mask
    np.testing.assert_array_equal(text == INDEX["liver"], clicked == INDEX["liver"])
