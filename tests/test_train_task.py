"""The ``/train`` task (``lib/trainers/textdiffseg.py``) called in-process on a MONAI Label local datastore.

Bad input ends the run at once with a one-line error in ``train_stats`` and the log, and the served model stays as
it was; the run's progress reaches the stats file while it runs.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch
from app_modules import app_modules
from monailabel.datastore.local import LocalDatastore

from textdiffseg.checkpoint import load_checkpoint, read_config, save_checkpoint
from textdiffseg.config import tiny_config
from textdiffseg.data.phantom import PhantomConfig, write_dataset
from textdiffseg.networks.model import TextDiffSeg
from textdiffseg.prompt_match import record_trained_structures, trained_structures
from textdiffseg.train_inputs import TrainingInputError


@pytest.fixture(scope="module")
def app_lib() -> Iterator[SimpleNamespace]:
    """The app's config and trainer modules."""
    with app_modules(
        config="lib.configs.textdiffseg",
        trainer="lib.trainers.textdiffseg",
    ) as modules:
        yield modules


@pytest.fixture(scope="module")
def phantom_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 6-mm phantom cases (images and their true label maps)."""
    out = tmp_path_factory.mktemp("train_task_phantoms")
    write_dataset(out, n=2, seed=5, cfg=PhantomConfig(spacing=(6.0, 6.0, 6.0)))
    return out


@pytest.fixture
def site(tmp_path: Path, phantom_images: Path) -> SimpleNamespace:
    """A datastore of the two phantom images with no label yet, and an app folder serving a stand-in model file."""
    studies = tmp_path / "studies"
    studies.mkdir()
    for image in sorted(phantom_images.glob("phantom_*.nii.gz")):
        shutil.copyfile(image, studies / image.name)
    app = tmp_path / "app"
    (app / "model").mkdir(parents=True)
    served = app / "model" / "pretrained_textdiffseg.pt"
    served.write_bytes(b"the served model")
    return SimpleNamespace(studies=studies, app=app, served=served, truth=phantom_images / "labelsTr")


def _save_label(datastore: LocalDatastore, tmp: Path, image_id: str, label: np.ndarray, label_info: list) -> None:
    affine = nib.load(tmp / "studies" / f"{image_id}.nii.gz").affine
    path = tmp / f"{image_id}_label.nii.gz"
    nib.save(nib.Nifti1Image(label.astype(np.uint8), affine), path)
    datastore.save_label(image_id, str(path), "final", {"label_info": label_info})


def _run_refused(app_lib: SimpleNamespace, site: SimpleNamespace, datastore: LocalDatastore, match: str) -> dict:
    """Run the task, expect it refused with ``match``; returns the stats file it left."""
    settings = app_lib.config.parse_conf({}, site.app)
    task = app_lib.trainer.TextDiffSegTrainer(settings)
    with pytest.raises(TrainingInputError, match=match):
        task({"max_epochs": 1, "train_steps_per_epoch": 1}, datastore)
    assert site.served.read_bytes() == b"the served model"
    assert not settings.published_model.exists()
    return json.loads(Path(task._stats_path).read_text())


def test_no_final_label_is_refused_in_the_stats_and_the_log(
    app_lib: SimpleNamespace, site: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    datastore = LocalDatastore(str(site.studies), extensions=("*.nii.gz",))
    with caplog.at_level(logging.ERROR):
        stats = _run_refused(app_lib, site, datastore, "no image has a final label")
    assert stats["status"] == "ERROR" and "\n" not in stats["error"]
    assert stats["error"].startswith("TrainingInputError: no image has a final label")
    logged = [r.getMessage() for r in caplog.records]
    assert any("served model is unchanged" in line and "no image has" in line for line in logged)


def test_a_label_on_another_grid_is_refused(app_lib: SimpleNamespace, site: SimpleNamespace) -> None:
    datastore = LocalDatastore(str(site.studies), extensions=("*.nii.gz",))
    truth = np.asarray(nib.load(site.truth / "phantom_000.nii.gz").dataobj)
    _save_label(datastore, site.studies.parent, "phantom_000", truth[:-3], [{"name": "liver", "idx": 1}])
    stats = _run_refused(app_lib, site, datastore, r"phantom_000: the label's shape .* differs from its image's")
    assert stats["status"] == "ERROR" and "differs from its image's" in stats["error"]


def test_label_info_naming_nothing_in_the_label_is_refused(app_lib: SimpleNamespace, site: SimpleNamespace) -> None:
    datastore = LocalDatastore(str(site.studies), extensions=("*.nii.gz",))
    truth = np.asarray(nib.load(site.truth / "phantom_001.nii.gz").dataobj)
    liver_only = (truth == 1).astype(np.uint8)  # value 1 only
    _save_label(datastore, site.studies.parent, "phantom_001", liver_only, [{"name": "aorta", "idx": 3}])
    stats = _run_refused(app_lib, site, datastore, r"phantom_001: it names aorta \(3\), but the label has no voxel")
    assert "values present: 1" in stats["error"]


class StatsWatcher:
    """Reads a stats file over and over from another thread, keeping every distinct content it saw."""

    def __init__(self, path: Path) -> None:
        self.path, self.seen, self._stop = path, [], threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                stats = json.loads(self.path.read_text())
            except (OSError, ValueError):  # not written yet; an atomic writer never leaves a partial file
                stats = None
            if stats is not None and (not self.seen or stats != self.seen[-1]):
                self.seen.append(stats)
            self._stop.wait(0.01)

    def __enter__(self) -> StatsWatcher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join()


def test_progress_reaches_the_stats_file_while_the_run_goes_on(
    app_lib: SimpleNamespace, site: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    site.served.unlink()  # nothing served: a new tiny model is trained
    datastore = LocalDatastore(str(site.studies), extensions=("*.nii.gz",))
    truth = np.asarray(nib.load(site.truth / "phantom_000.nii.gz").dataobj)
    _save_label(datastore, site.studies.parent, "phantom_000", truth, [{"name": "liver", "idx": 1}])
    settings = app_lib.config.parse_conf({"train_preset": "tiny", "text_encoder": "default"}, site.app)
    task = app_lib.trainer.TextDiffSegTrainer(settings)
    request = {"max_epochs": 3, "train_steps_per_epoch": 2, "pretrained": False, "max_minutes": 5}
    with caplog.at_level(logging.INFO), StatsWatcher(Path(task._stats_path)) as watcher:
        final = task(request, datastore)
    running = [s for s in watcher.seen if s["status"] == "RUNNING" and s.get("step") and "phase" not in s]
    steps = [s["step"] for s in running]  # one rewrite per epoch end (2, 4, 6), seen before the run ended
    assert len(steps) >= 2 and steps == sorted(set(steps)) and set(steps) <= {2, 4, 6}
    assert all({"epoch", "elapsed", "eta", "loss"} <= set(s) and s["epoch"] == s["step"] // 2 for s in running)
    assert final["status"] == "DONE" and json.loads(Path(task._stats_path).read_text())["status"] == "DONE"
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert len(lines) == 3 and lines[0].startswith("epoch 1/3 step 2/6 loss ") and " eta " in lines[0]


def _tiny_served_model(path: Path, encoder, known: list[str]) -> None:  # noqa: ANN001 - TextEncoder
    """An untrained tiny model recording ``known`` as its trained structures, saved as the served checkpoint."""
    model = TextDiffSeg(
        tiny_config(
            text_encoder=encoder.name, text_hidden_size=encoder.hidden_size, text_fingerprint=encoder.fingerprint
        )
    )
    record_trained_structures(model.config, known)
    save_checkpoint(path, model)


def test_the_recipe_holds_out_a_validation_share_and_rehearses_what_the_model_knew(
    app_lib: SimpleNamespace, site: SimpleNamespace, tiny_encoder, caplog: pytest.LogCaptureFixture
) -> None:
    _tiny_served_model(site.served, tiny_encoder, ["liver", "spleen", "aorta"])
    datastore = LocalDatastore(str(site.studies), extensions=("*.nii.gz",))
    for case in ("phantom_000", "phantom_001"):
        truth = np.asarray(nib.load(site.truth / f"{case}.nii.gz").dataobj)
        _save_label(
            datastore, site.studies.parent, case, (truth == 3).astype(np.uint8), [{"name": "Left kidney", "idx": 1}]
        )
    settings = app_lib.config.parse_conf({}, site.app)
    task = app_lib.trainer.TextDiffSegTrainer(settings)
    with caplog.at_level(logging.INFO):  # every weight: a new structure alone is taught by prompts by default
        stats = task({"max_epochs": 2, "train_steps_per_epoch": 2, "tune": "all"}, datastore)
    assert stats["status"] == "DONE" and stats["structures"] == ["left kidney"] and stats["tune"] == "all"
    counts = ("train_cases", "validation_cases", "rehearsal_cases", "real_rehearsal_cases", "teacher_cases")
    assert tuple(stats[k] for k in counts) == (1, ["phantom_001"], 4, 0, 1)  # no real CT in this app's checkout
    # the served model's masks of what it knew, on the one training image (never on the validation one)
    teacher = sorted((site.app / "model" / "textdiffseg" / "train_01" / "teacher").glob("*.nii.gz"))
    assert [t.name for t in teacher] == ["phantom_000_teacher.nii.gz"]
    assert 0.0 <= stats["best_val_dice"] <= 1.0 and stats["best_step"] in (2, 4)
    assert any("val Dice" in r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch "))
    rehearsal = sorted((site.app / "model" / "textdiffseg" / "phantoms").glob("rehearsal_*/imagesTr/*.nii.gz"))
    assert len(rehearsal) == 4
    # the published model knows the new structure, keeps what it knew, and learned no other phantom structure
    published = read_config(settings.published_model)
    assert trained_structures(published) == ("aorta", "left kidney", "liver", "spleen")


def test_a_new_structure_alone_is_taught_by_learned_prompts_with_the_network_frozen(
    app_lib: SimpleNamespace, site: SimpleNamespace, tiny_encoder
) -> None:
    _tiny_served_model(site.served, tiny_encoder, ["liver", "spleen"])
    served_state = load_checkpoint(site.served, tiny_encoder)[0].state_dict()
    datastore = LocalDatastore(str(site.studies), extensions=("*.nii.gz",))
    truth = np.asarray(nib.load(site.truth / "phantom_000.nii.gz").dataobj)
    _save_label(
        datastore,
        site.studies.parent,
        "phantom_000",
        (truth == 3).astype(np.uint8),
        [{"name": "Left kidney", "idx": 1}],
    )
    settings = app_lib.config.parse_conf({}, site.app)
    task = app_lib.trainer.TextDiffSegTrainer(settings)
    stats = task({"max_epochs": 1, "train_steps_per_epoch": 2}, datastore)
    assert stats["status"] == "DONE" and stats["tune"] == "prompts" and stats["learned_prompts"] == ["left kidney"]
    assert (stats["rehearsal_cases"], stats["real_rehearsal_cases"], stats["teacher_cases"]) == (0, 0, 0)
    assert not (site.app / "model" / "textdiffseg" / "train_01" / "teacher").exists()
    assert stats["publish_gate"]["publish"], "known answers cannot have changed"
    published, _ = load_checkpoint(settings.published_model, tiny_encoder)
    assert published.config.learned_prompts == ("left kidney",)
    assert trained_structures(published.config) == ("left kidney", "liver", "spleen")
    state = published.state_dict()
    assert all(torch.equal(state[key], value) for key, value in served_state.items()), "the network is frozen"
    # asking for prompts when every labelled structure is known is refused before anything runs
    _save_label(
        datastore, site.studies.parent, "phantom_000", (truth == 1).astype(np.uint8), [{"name": "liver", "idx": 1}]
    )
    with pytest.raises(ValueError, match="already knows every labelled structure"):
        task({"max_epochs": 1, "train_steps_per_epoch": 1, "tune": "prompts"}, datastore)
    with pytest.raises(ValueError, match="tune"):
        task.check_request({"tune": "everything"})


def _ruinous_run(
    app_lib: SimpleNamespace,
    site: SimpleNamespace,
    trained_tiny,
    conf: dict[str, str],  # noqa: ANN001
) -> tuple[dict, object, object]:
    """Serve the tiny trained model, label the liver of one image, and run ``/train`` at a learning rate that wrecks
    the weights; returns ``(stats, settings, task)``."""
    shutil.copyfile(trained_tiny.run_dir / "model.pt", site.served)
    datastore = LocalDatastore(str(site.studies), extensions=("*.nii.gz",))
    truth = np.asarray(nib.load(site.truth / "phantom_000.nii.gz").dataobj)
    _save_label(
        datastore, site.studies.parent, "phantom_000", (truth == 1).astype(np.uint8), [{"name": "liver", "idx": 1}]
    )
    settings = app_lib.config.parse_conf(conf, site.app)
    task = app_lib.trainer.TextDiffSegTrainer(settings)
    ruin = {"max_epochs": 1, "train_steps_per_epoch": 3, "learning_rate": 0.9, "rehearsal": False}
    return task(ruin, datastore), settings, task


def test_a_retrained_model_that_got_worse_is_not_published(
    app_lib: SimpleNamespace, site: SimpleNamespace, trained_tiny, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        stats, settings, task = _ruinous_run(app_lib, site, trained_tiny, {})
    served_bytes = (trained_tiny.run_dir / "model.pt").read_bytes()
    assert stats["status"] == "DONE" and stats["published"] is None
    gate = stats["publish_gate"]
    assert not gate["publish"] and gate["drops"] and "served model is kept" in gate["reason"]
    assert any(key.startswith("regression/") for key in gate["drops"])
    assert gate["served_dice"]["regression"]["liver"] - gate["candidate_dice"]["regression"]["liver"] > 0.02
    assert not settings.published_model.exists() and site.served.read_bytes() == served_bytes
    assert any("not published: Dice dropped" in r.getMessage() for r in caplog.records)
    assert json.loads(Path(task._stats_path).read_text())["publish_gate"] == gate
    assert (Path(task._model_dir) / "phantoms").is_dir(), "the gate drew its regression phantoms here"


def test_with_the_gate_off_a_worse_model_is_published_unscored(
    app_lib: SimpleNamespace, site: SimpleNamespace, trained_tiny, caplog: pytest.LogCaptureFixture
) -> None:
    """``--conf publish_gate false``: the run that the gate refuses above is published, and the stats say why."""
    with caplog.at_level(logging.INFO):
        stats, settings, task = _ruinous_run(app_lib, site, trained_tiny, {"publish_gate": "false"})
    assert not settings.publish_gate and app_lib.config.parse_conf({}, site.app).publish_gate
    gate = stats["publish_gate"]
    assert stats["status"] == "DONE" and stats["published"] and settings.published_model.exists()
    assert gate["publish"] and "gate is off" in gate["reason"] and not gate["served_dice"], gate
    assert not (Path(task._model_dir) / "phantoms").exists(), "nothing was scored: no regression phantoms drawn"
    assert any("gate is off" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match="publish_gate"):
        app_lib.config.parse_conf({"publish_gate": "maybe"}, site.app)
