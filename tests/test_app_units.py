"""Fast checks of the app's pieces without a server: conf parsing, request parsing, label info, strategies, helpers.

The app's package is named ``lib`` (MONAI Label requires it); the fixture puts the app folder on ``sys.path`` only
while this module runs and drops the ``lib`` modules afterwards, as MONAI Label itself does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
from app_modules import app_modules
from fastapi import HTTPException

from textdiffseg.checkpoint import save_checkpoint
from textdiffseg.config import tiny_config
from textdiffseg.data.label_maps import PHANTOM_TARGETS
from textdiffseg.data.vocabulary import PromptVocabulary
from textdiffseg.label_fusion import label_map_from_probabilities
from textdiffseg.label_info import targets_from_label_info
from textdiffseg.networks.model import TextDiffSeg
from textdiffseg.prompts import PromptError
from textdiffseg.uncertainty import image_uncertainty, prompt_uncertainty, voxel_uncertainty

VOCAB = PromptVocabulary.load()
INDEX = VOCAB.index_map()


@pytest.fixture(scope="module")
def app_lib() -> Iterator[SimpleNamespace]:
    """The app's ``lib`` modules under test."""
    with app_modules(
        strategy="lib.activelearning.diffusion_uncertainty",
        random_guarded="lib.activelearning.random_guarded",
        config="lib.configs.textdiffseg",
        infer_request="lib.infers.infer_params",
        text_prompt="lib.infers.text_prompt",
        cases="lib.trainers.cases",
        trainer="lib.trainers.textdiffseg",
        train_request="lib.trainers.train_params",
    ) as modules:
        yield modules


# --- conf ------------------------------------------------------------------------------------------------------------


def test_conf_defaults(app_lib: SimpleNamespace, tmp_path: Path) -> None:
    settings = app_lib.config.parse_conf({}, tmp_path)
    assert settings.ensemble == 1 and settings.uncertainty_ensemble == 4 and settings.uncertainty_prompts == ()
    assert settings.text_encoder is None and settings.sampling_steps is None and settings.roi_size is None
    assert settings.use_pretrained_model and settings.labels is None and not settings.auto_update_scoring
    assert (settings.max_denoiser_calls, settings.max_train_steps) == (2_000, 20_000)
    assert settings.vocabulary.index_map() == INDEX
    assert settings.published_model == tmp_path.resolve() / "model" / "textdiffseg.pt"
    assert settings.device in ("cpu", "cuda")
    assert settings.fine_pass  # zoom in whenever the checkpoint holds a fine stage


def test_conf_values_are_parsed_from_strings(app_lib: SimpleNamespace, tmp_path: Path) -> None:
    vocab = tmp_path / "vocab.json"
    vocab.write_text('{"labels": [{"name": "liver", "prompts": ["hepar"]}, {"name": "spleen"}]}')
    conf = {
        "text_encoder": "/models/biobert",
        "sampling_steps": "7",
        "ensemble": "3",
        "uncertainty_ensemble": "6",
        "uncertainty_prompts": " pancreas ;pancreas tumor;; ",
        "roi_size": "[96, 96, 64]",
        "device": "cpu",
        "use_pretrained_model": "false",
        "labels": str(vocab),
        "max_voxels": "1000",
        "train_steps_per_epoch": "9",
        "max_denoiser_calls": "500",
        "max_train_steps": "90",
        "train_preset": "tiny",
        "auto_update_scoring": "true",
        "fine_pass": "false",
        "server_mode": "true",  # MONAI Label's own key: ignored
    }
    s = app_lib.config.parse_conf(conf, tmp_path)
    assert (s.text_encoder, s.sampling_steps, s.ensemble, s.uncertainty_ensemble) == ("/models/biobert", 7, 3, 6)
    assert s.roi_size == (96, 96, 64) and s.device == "cpu" and not s.use_pretrained_model
    assert s.vocabulary.index_map() == {"liver": 1, "spleen": 2} and s.labels == vocab.resolve()
    assert (s.max_voxels, s.train_steps_per_epoch, s.train_preset, s.auto_update_scoring) == (1000, 9, "tiny", True)
    assert (s.max_denoiser_calls, s.max_train_steps) == (500, 90)
    assert not s.fine_pass
    assert s.uncertainty_prompts == ("pancreas", "pancreas tumor")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("sampling_steps", "-1"),
        ("sampling_steps", "five"),
        ("ensemble", "0"),
        ("ensemble", "1.5"),
        ("uncertainty_ensemble", "100"),
        ("roi_size", "[96, 96]"),
        ("roi_size", "big"),
        ("device", "gpu"),
        ("use_pretrained_model", "maybe"),
        ("labels", "/no/such/vocabulary.json"),
        ("max_voxels", "0"),
        ("train_steps_per_epoch", "many"),
        ("train_steps_per_epoch", "100001"),
        ("max_denoiser_calls", "0"),
        ("max_train_steps", "lots"),
        ("train_preset", "huge"),
        ("auto_update_scoring", "2"),
        ("anonymous_admin", "maybe"),
        ("fine_pass", "sometimes"),
        ("rehearsal_data", "/no/such/dataset"),
    ],
)
def test_bad_conf_values_raise_a_one_line_error_naming_the_key(
    app_lib: SimpleNamespace, tmp_path: Path, key: str, value: str
) -> None:
    with pytest.raises(ValueError, match=f"'{key}'") as caught:
        app_lib.config.parse_conf({key: value}, tmp_path)
    assert "\n" not in str(caught.value)


def test_real_ct_rehearsal_defaults_to_the_checkouts_dataset_and_can_be_turned_off(
    app_lib: SimpleNamespace, tmp_path: Path
) -> None:
    checkout = tmp_path / "checkout"
    app, realct = checkout / "apps" / "textdiffseg_app", checkout / "datasets" / "realct"
    app.mkdir(parents=True)
    assert app_lib.config.parse_conf({}, app).rehearsal_data is None  # no `make realct` in this checkout
    realct.mkdir(parents=True)
    (realct / "dataset.json").write_text("{}")
    assert app_lib.config.parse_conf({}, app).rehearsal_data == realct.resolve()
    assert app_lib.config.parse_conf({"rehearsal_data": "none"}, app).rehearsal_data is None
    assert app_lib.config.parse_conf({"rehearsal_data": str(realct)}, tmp_path).rehearsal_data == realct.resolve()


def test_bad_vocabulary_file_names_the_labels_key(app_lib: SimpleNamespace, tmp_path: Path) -> None:
    broken = tmp_path / "vocab.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="'labels'"):
        app_lib.config.parse_conf({"labels": str(broken)}, tmp_path)


def test_trained_model_is_served_before_the_pretrained_one(app_lib: SimpleNamespace, tmp_path: Path) -> None:
    settings = app_lib.config.parse_conf({}, tmp_path)
    assert settings.current_model() is None
    settings.model_dir.mkdir()
    settings.pretrained_model.write_bytes(b"demo")
    assert settings.current_model() == settings.pretrained_model
    settings.published_model.write_bytes(b"trained")
    assert settings.current_model() == settings.published_model
    settings.published_model.unlink()
    without = app_lib.config.parse_conf({"use_pretrained_model": "false"}, tmp_path)
    assert without.current_model() is None and without.model_candidates() == [without.published_model]


# --- infer and train requests ----------------------------------------------------------------------------------------


def test_no_prompt_at_all_is_refused_with_both_options_named(app_lib: SimpleNamespace) -> None:
    parse = app_lib.infer_request.parse_infer_params
    for request in ({}, {"text_prompt": ""}, {"text_prompt": "", "label_prompt": []}):
        with pytest.raises(PromptError, match="no prompt.*text_prompt.*label_prompt"):
            parse(request, VOCAB, 1, None)
    only = parse({"text_prompt": "", "label_prompt": [INDEX["spleen"]]}, VOCAB, 1, None)
    assert [(p.name, p.value) for p in only.prompts] == [("spleen", INDEX["spleen"])]


@pytest.mark.parametrize(
    "request_params",
    [
        {"text_prompt": "   "},
        {"text_prompt": " ; "},
        {"text_prompt": "liver", "ensemble": 0},
        {"text_prompt": "liver", "ensemble": "x"},
        {"text_prompt": "liver", "ensemble": True},
        {"text_prompt": "liver", "sampling_steps": -2},
        {"text_prompt": "liver", "uncertainty": "sometimes"},
        {"text_prompt": "liver", "fine_pass": "partly"},
        {"label_prompt": [99]},
    ],
)
def test_bad_infer_requests_raise_prompt_errors(app_lib: SimpleNamespace, request_params: dict) -> None:
    with pytest.raises(PromptError):
        app_lib.infer_request.parse_infer_params(request_params, VOCAB, 1, None)


def test_infer_request_values_and_defaults(app_lib: SimpleNamespace) -> None:
    parse = app_lib.infer_request.parse_infer_params
    params = parse({"text_prompt": "liver; appendix", "ensemble": "3", "uncertainty": "true"}, VOCAB, 1, None)
    assert [(p.name, p.value) for p in params.prompts] == [("liver", 1), ("appendix", len(INDEX) + 1)]
    assert (params.ensemble, params.steps, params.uncertainty) == (3, None, True)
    defaults = parse({"text_prompt": "liver"}, VOCAB, 2, 7)
    assert (defaults.ensemble, defaults.steps, defaults.uncertainty) == (2, 7, False)
    assert defaults.fine_pass and not parse({"text_prompt": "liver", "fine_pass": "false"}, VOCAB, 2, 7).fine_pass
    assert parse({"text_prompt": "liver", "sampling_steps": 0}, VOCAB, 2, 7).steps is None  # the service's default


def test_train_request_collapses_client_lists_and_validates(app_lib: SimpleNamespace) -> None:
    parse = app_lib.train_request.parse_train_params
    params = parse({"device": ["cpu"], "max_epochs": "3", "tracking": ["mlflow", "None"]}, 10, "cpu", 20_000)
    assert (params.name, params.pretrained, params.steps, params.device, params.tracking) == (
        "train_01",
        True,
        30,
        "cpu",
        "mlflow",
    )
    for key, value in [("name", "../outside"), ("max_epochs", 0), ("learning_rate", "fast"), ("device", "tpu")]:
        with pytest.raises(ValueError, match=f"'{key}'"):
            parse({key: value}, 10, "cpu", 20_000)
    assert parse({"max_epochs": "", "pretrained": [""], "train_steps_per_epoch": 4.0}, 10, "cpu", 20_000).steps == 8


def test_train_request_total_steps_are_capped(app_lib: SimpleNamespace) -> None:
    parse = app_lib.train_request.parse_train_params
    assert parse({"max_epochs": 100, "train_steps_per_epoch": 200}, 10, "cpu", 20_000).steps == 20_000
    with pytest.raises(ValueError, match=r"max_epochs 100 x train_steps_per_epoch 201 = 20,100 .* limit of 20,000"):
        parse({"max_epochs": 100, "train_steps_per_epoch": 201}, 10, "cpu", 20_000)
    for key, value in [("max_epochs", 1001), ("train_steps_per_epoch", 100_001)]:
        with pytest.raises(ValueError, match=f"'{key}'"):
            parse({key: value}, 1, "cpu", 10**9)


def test_the_trainer_checks_a_request_with_its_defaults_and_the_conf_cap(
    app_lib: SimpleNamespace, tmp_path: Path
) -> None:
    settings = app_lib.config.parse_conf({"train_steps_per_epoch": "50", "max_train_steps": "100"}, tmp_path)
    trainer = app_lib.trainer.TextDiffSegTrainer(settings)
    assert trainer.check_request({}).steps == 100  # the config's 2 epochs x the conf's 50 steps
    with pytest.raises(ValueError, match="max_epochs 3 x train_steps_per_epoch 50 = 150 steps, over the limit of 100"):
        trainer.check_request({"max_epochs": 3})


# --- label info -> training targets ----------------------------------------------------------------------------------


def test_slicer_label_info_maps_to_canonical_targets() -> None:
    info = [
        {"name": "Liver", "idx": 1},
        {"name": "hepatic lesion", "idx": 2},
        {"name": "splenic parenchyma", "idx": 3},
        {"name": "Gall bladder", "idx": 4},  # a synonym of the vocabulary's "gallbladder"
        {"name": "Appendix", "idx": 5},  # free text: kept, lower case
        {"name": "background", "idx": 0},
    ]
    targets = targets_from_label_info(info, VOCAB)
    assert targets == {"liver": (1, 2), "liver tumor": (2,), "spleen": (3,), "gallbladder": (4,), "appendix": (5,)}
    assert targets_from_label_info({"spleen": 5}, VOCAB) == {"spleen": (5,)}


@pytest.mark.parametrize(
    "info",
    [None, [], "liver", [{"name": "background", "idx": 1}], [{"name": "", "idx": 1}], [{"name": "x", "idx": "a"}]],
)
def test_unusable_label_info_gives_no_targets(info: object) -> None:
    assert targets_from_label_info(info, VOCAB) == {}


def test_labels_without_info_fall_back_to_phantom_values(app_lib: SimpleNamespace) -> None:
    targets, source = app_lib.cases.label_targets({}, VOCAB)
    assert source == "phantom" and targets == dict(PHANTOM_TARGETS)
    named, source = app_lib.cases.label_targets({"label_info": [{"name": "spleen", "idx": 1}]}, VOCAB)
    assert source == "label_info" and named == {"spleen": (1,)}


# --- numeric helpers -------------------------------------------------------------------------------------------------


def test_label_map_gives_overlaps_to_the_more_confident_prompt() -> None:
    probability = np.array([[[0.9, 0.6, 0.2, 0.7]], [[0.1, 0.8, 0.3, 0.7]]], dtype=np.float32)  # (2, 1, 4)
    label_map = label_map_from_probabilities(probability, [4, 13])
    assert label_map.dtype == np.uint8 and label_map.tolist() == [[4, 13, 0, 4]]
    with pytest.raises(ValueError):
        label_map_from_probabilities(probability, [1])
    with pytest.raises(ValueError):
        label_map_from_probabilities(probability, [1, 256])


def test_uncertainty_summaries() -> None:
    probability = np.zeros((2, 4, 4, 4), np.float32)
    uncertainty = np.zeros_like(probability)
    assert image_uncertainty(probability, uncertainty) == 0.0
    probability[0, :2] = 0.5
    uncertainty[0, :2] = 1.0
    uncertainty[1, :2, :2] = 0.5
    assert image_uncertainty(probability, uncertainty) == pytest.approx(1.0)
    assert prompt_uncertainty(probability, uncertainty) == [pytest.approx(1.0), 0.0]
    assert voxel_uncertainty(uncertainty).shape == (4, 4, 4)
    with pytest.raises(ValueError):
        image_uncertainty(probability, uncertainty[:1])


# --- strategies ------------------------------------------------------------------------------------------------------


class FakeDatastore:
    """The two datastore calls strategies make."""

    def __init__(self, infos: dict[str, dict]) -> None:
        self.infos = infos

    def get_unlabeled_images(self, label_tag: str | None = None, labels: list | None = None) -> list[str]:
        return list(self.infos)

    def get_image_info(self, image_id: str) -> dict:
        return self.infos[image_id]


def test_uncertainty_strategy_picks_the_highest_score_or_says_it_fell_back(app_lib: SimpleNamespace) -> None:
    strategy = app_lib.strategy.DiffusionUncertainty()
    unscored = strategy({}, FakeDatastore({"b": {}, "a": {}}))
    assert unscored["id"] == "a" and "no unlabeled image" in unscored["selection"]
    scored = strategy({}, FakeDatastore({"a": {"diffusion_uncertainty": 0.2}, "b": {"diffusion_uncertainty": 0.7}}))
    assert scored["id"] == "b" and scored["diffusion_uncertainty"] == 0.7
    assert strategy({}, FakeDatastore({})) is None


def test_random_strategy_survives_zero_weights(app_lib: SimpleNamespace) -> None:
    now = int(time.time()) + 5  # served "in the future": every MONAI Label weight would be <= 0
    infos = {i: {"strategy": {"random": {"ts": now}}} for i in ("b", "a")}
    assert app_lib.random_guarded.GuardedRandom()({"strategy": "random"}, FakeDatastore(infos))["id"] == "a"
    fresh = app_lib.random_guarded.GuardedRandom()({"strategy": "random"}, FakeDatastore({"c": {}}))
    assert fresh["id"] == "c" and fresh["weight"] > 0


# --- the infer task's HTTP errors (in-process, no server) ------------------------------------------------------------


def _infer_task(app_lib: SimpleNamespace, app_dir: Path, conf: dict[str, str]) -> object:
    settings = app_lib.config.parse_conf(conf, app_dir)
    return app_lib.text_prompt.TextPromptInfer(settings, app_lib.config.build_service(settings))


def _volume(path: Path, shape: tuple[int, ...], spacing: float = 2.0) -> str:
    nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), np.diag([spacing, spacing, spacing, 1.0])), path)
    return str(path)


def test_infer_without_a_checkpoint_is_a_503(app_lib: SimpleNamespace, tmp_path: Path) -> None:
    task = _infer_task(app_lib, tmp_path, {})
    assert not task.is_valid()  # hidden from /info until a checkpoint exists
    with pytest.raises(HTTPException) as caught:
        task({"image": _volume(tmp_path / "ct.nii.gz", (8, 8, 8)), "text_prompt": "liver"})
    assert caught.value.status_code == 503 and "no model checkpoint" in caught.value.detail


def test_bad_prompt_image_and_size_are_4xx(app_lib: SimpleNamespace, tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    save_checkpoint(tmp_path / "model" / "pretrained_textdiffseg.pt", TextDiffSeg(tiny_config()))
    task = _infer_task(app_lib, tmp_path, {"max_voxels": "1000", "max_denoiser_calls": "10"})
    assert task.is_valid()
    ct = _volume(tmp_path / "ct.nii.gz", (8, 8, 8))
    cases = [
        ({"image": ct, "text_prompt": "  "}, 400, "empty"),
        ({"image": ct, "text_prompt": "liver", "ensemble": 32}, 413, "96 denoiser calls"),
        ({"image": _volume(tmp_path / "slice.nii.gz", (8, 8, 1)), "text_prompt": "liver"}, 400, "2D"),
        ({"image": _volume(tmp_path / "big.nii.gz", (12, 12, 12), 6.0), "text_prompt": "liver"}, 413, "budget"),
        ({"image": _volume(tmp_path / "huge.nii.gz", (64, 64, 64)), "text_prompt": "liver"}, 413, "limit"),
        ({"image": _volume(tmp_path / "series.nii.gz", (8, 8, 8, 3)), "text_prompt": "liver"}, 400, "4D"),
    ]
    for request, status, message in cases:
        with pytest.raises(HTTPException) as caught:
            task(request)
        assert caught.value.status_code == status and message in caught.value.detail


def test_infer_answer_says_how_each_prompt_was_understood(app_lib: SimpleNamespace, tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    save_checkpoint(tmp_path / "model" / "pretrained_textdiffseg.pt", TextDiffSeg(tiny_config()))  # no record: 12
    task = _infer_task(app_lib, tmp_path, {"sampling_steps": "1"})
    _, answer = task({"image": _volume(tmp_path / "ct.nii.gz", (8, 8, 8)), "text_prompt": "kidney left; banana"})
    kidney, banana = answer["prompts"]
    assert kidney["name"] == "kidney left" and kidney["understood_as"] == "left kidney" and kidney["known"]
    assert kidney["similarity"] > 0.9
    assert kidney["passes"] == ["coarse"] and "zoom_in" not in answer  # a checkpoint without a fine stage
    assert banana["known"] is False and banana["understood_as"] is None and banana["nearest_trained"]
    assert "'banana' is not a structure the served model was trained on" in answer["warning"]
    assert answer["label_names"] == {"kidney left": len(INDEX) + 1, "banana": len(INDEX) + 2}
