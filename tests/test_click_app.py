"""The app's click input without a server: request parsing, 400s, the vista3d listing, and a click answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch
from app_modules import app_modules
from fastapi import HTTPException

from textdiffseg.checkpoint import save_checkpoint
from textdiffseg.click_branch import add_click_branch
from textdiffseg.clicks import MAX_CLICKS, ClickError
from textdiffseg.config import tiny_config
from textdiffseg.data.vocabulary import PromptVocabulary
from textdiffseg.networks.model import TextDiffSeg

VOCAB = PromptVocabulary.load()
INDEX = VOCAB.index_map()


@pytest.fixture(scope="module")
def app_lib() -> Iterator[SimpleNamespace]:
    """The app's ``lib`` modules under test."""
    with app_modules(
        config="lib.configs.textdiffseg",
        infer_request="lib.infers.infer_params",
        point_prompt="lib.infers.point_prompt",
        text_prompt="lib.infers.text_prompt",
    ) as modules:
        yield modules


def _parse(app_lib: SimpleNamespace, request: dict) -> object:
    return app_lib.infer_request.parse_infer_params(request, VOCAB, 1, None)


def test_vista3d_and_deepgrow_clicks_go_to_the_first_prompt(app_lib: SimpleNamespace) -> None:
    ohif = _parse(
        app_lib,
        {"label_prompt": [INDEX["spleen"]], "points": [[1, 2, 3], [4, 5, 6]], "point_labels": [1, 0]},
    )
    assert [p.name for p in ohif.prompts] == ["spleen"]
    assert ohif.clicks.points == ((1, 2, 3), (4, 5, 6)) and ohif.clicks.labels == (1, 0)
    assert ohif.prompt_clicks() == [ohif.clicks]
    slicer = _parse(app_lib, {"text_prompt": "liver; spleen", "foreground": [[7, 8, 9]], "background": []})
    assert slicer.clicks.labels == (1,) and slicer.prompt_clicks() == [slicer.clicks, None]
    both = _parse(
        app_lib,
        {"text_prompt": "liver", "points": [[1, 1, 1]], "point_labels": [0], "foreground": [[2.0, 2, 2]]},
    )
    assert both.clicks.points == ((1, 1, 1), (2, 2, 2)) and both.clicks.labels == (0, 1)
    assert _parse(app_lib, {"text_prompt": "liver", "points": [], "point_labels": []}).clicks is None


@pytest.mark.parametrize(
    ("request_params", "message"),
    [
        ({"points": [[1, 2, 3]]}, "without point_labels"),
        ({"points": [[1, 2, 3]], "point_labels": [1, 1]}, "2 labels for 1 points"),
        ({"points": [[1, 2, 3]], "point_labels": [2]}, "1 \\(foreground\\) or 0"),
        ({"points": [[1, 2, 3]], "point_labels": [True]}, "1 \\(foreground\\) or 0"),
        ({"points": [[1, 2.5, 3]], "point_labels": [1]}, "must be integers"),
        ({"points": [[1, "2", 3]], "point_labels": [1]}, "must be integers"),
        ({"points": [[1, 2]], "point_labels": [1]}, "three voxel indices"),
        ({"points": "1,2,3", "point_labels": [1]}, "must be a list"),
        ({"foreground": [[1, 2, 3, 4]]}, "three voxel indices"),
        ({"foreground": [[1, 2, 3]] * 40, "background": [[1, 2, 3]] * 40}, f"the limit is {MAX_CLICKS}"),
        ({"foreground": [[0, 0, 0]] * (MAX_CLICKS + 1)}, f"the limit is {MAX_CLICKS}"),
    ],
)
def test_malformed_clicks_are_refused(app_lib: SimpleNamespace, request_params: dict, message: str) -> None:
    with pytest.raises(ClickError, match=message):
        _parse(app_lib, {"text_prompt": "liver", **request_params})


def _task(
    app_lib: SimpleNamespace,
    app_dir: Path,
    model: TextDiffSeg,
    cls_name: str = "TextPromptInfer",
    conf: dict[str, str] | None = None,
) -> object:
    (app_dir / "model").mkdir(exist_ok=True)
    save_checkpoint(app_dir / "model" / "pretrained_textdiffseg.pt", model)
    settings = app_lib.config.parse_conf({"sampling_steps": "1", **(conf or {})}, app_dir)
    service = app_lib.config.build_service(settings)
    module = app_lib.point_prompt if cls_name == "PointPromptInfer" else app_lib.text_prompt
    return getattr(module, cls_name)(settings, service)


def _volume(path: Path, shape: tuple[int, ...]) -> str:
    data = np.random.default_rng(0).normal(0, 100, shape).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([4.0, 4.0, 4.0, 1.0])), path)
    return str(path)


def test_a_text_only_checkpoint_takes_clicks_as_edits_unless_they_are_turned_off(
    app_lib: SimpleNamespace, tmp_path: Path
) -> None:
    ct = _volume(tmp_path / "ct.nii.gz", (12, 12, 12))
    request = {"image": ct, "text_prompt": "liver", "foreground": [[6, 6, 6]]}
    answer = _task(app_lib, tmp_path, TextDiffSeg(tiny_config()))(request)
    label = np.asarray(nib.load(answer[0]).dataobj)
    assert label[6, 6, 6] > 0 and answer[1]["clicks"]["edited_voxels"] >= 1, answer[1]
    assert _task(app_lib, tmp_path, TextDiffSeg(tiny_config()), "PointPromptInfer").is_valid()

    off = {"click_edits": "false"}
    with pytest.raises(HTTPException) as caught:
        _task(app_lib, tmp_path, TextDiffSeg(tiny_config()), conf=off)(request)
    assert caught.value.status_code == 400 and "does not take clicks" in caught.value.detail
    points = _task(app_lib, tmp_path, TextDiffSeg(tiny_config()), "PointPromptInfer", conf=off)
    assert not points.is_valid() and points.info()["type"] == "vista3d"


def test_a_click_checkpoint_answers_clicks_and_refuses_points_outside(app_lib: SimpleNamespace, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = add_click_branch(TextDiffSeg(tiny_config()))
    points = _task(app_lib, tmp_path, model, "PointPromptInfer")
    assert points.is_valid() and points.info()["type"] == "vista3d"
    ct = _volume(tmp_path / "ct.nii.gz", (12, 12, 12))
    request = {
        "image": ct,
        "text_prompt": "",
        "label_prompt": [INDEX["liver"]],
        "points": [[3, 4, 5]],
        "point_labels": [1],
    }
    label_file, answer = points(request)
    edited = answer["clicks"].pop("edited_voxels")
    assert answer["clicks"] == {"prompt": "liver", "foreground": 1, "background": 0}
    assert np.asarray(nib.load(label_file).dataobj)[3, 4, 5] > 0 and edited >= 0  # the foreground click holds
    with pytest.raises(HTTPException) as caught:
        points({**request, "points": [[3, 4, 12]]})
    assert caught.value.status_code == 400 and "outside the image" in caught.value.detail
