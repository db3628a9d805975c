"""Reliability of the served app, against a real server subprocess started as admins do (plain ``start_server``).

* every bad input of ``bad_inputs.BAD_INPUTS`` gets its 4xx status and a JSON ``detail`` naming the problem, and a
  good infer on the same keep-alive connection succeeds right after;
* 8 concurrent infers all complete correctly while ``/info`` keeps answering within 1 s;
* a background training run does not block infer; SIGKILLing it mid-run leaves the served checkpoint loadable and
  byte-identical;
* a saved label survives a SIGKILLed server and a restart;
* prompts are never used as code or paths.

Auth (``MONAI_LABEL_AUTH_ENABLE=true``) is in ``test_auth.py``; the prompt parser's property tests in
``test_prompts.py``. The tests share one server and run in file order.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import psutil
import pytest
import requests
from bad_inputs import BAD_INPUTS, MODEL, BadInput, write_bad_files

from server_harness import ADMIN_CONF, DEMO_CHECKPOINT, RunningServer, ServerStartError, copy_app, start_server
from textdiffseg.checkpoint import load_checkpoint
from textdiffseg.data.phantom import PhantomConfig, write_dataset
from textdiffseg.data.vocabulary import PromptVocabulary

pytestmark = pytest.mark.slow

INDEX = PromptVocabulary.load().index_map()
CONF = {"max_voxels": "2000000", "train_steps_per_epoch": "5", **ADMIN_CONF}
PUBLISHED = "textdiffseg.pt"


@dataclass
class Setup:
    """The shared server and its folders."""

    server: RunningServer
    workdir: Path
    studies: Path
    bad_files: Path

    @property
    def url(self) -> str:
        return self.server.url


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """Two 6-mm phantoms (one labelled), the demo checkpoint already published as the served ``textdiffseg.pt``."""
    if not DEMO_CHECKPOINT.is_file():
        pytest.fail(f"{DEMO_CHECKPOINT} is missing (it ships with the repository)")
    workdir = tmp_path_factory.mktemp("reliability")
    studies = workdir / "studies"
    write_dataset(studies, n=2, seed=3, cfg=PhantomConfig(spacing=(6.0, 6.0, 6.0)))
    (studies / "labels" / "final" / "phantom_001.nii.gz").unlink()
    app_dir = copy_app(workdir / "app", DEMO_CHECKPOINT)
    (app_dir / "model" / PUBLISHED).write_bytes(DEMO_CHECKPOINT.read_bytes())
    write_bad_files(workdir / "bad")
    try:
        server = start_server(app_dir, studies, workdir, conf=CONF)
    except ServerStartError as err:
        pytest.fail(str(err))
    box = Setup(server, workdir, studies, workdir / "bad")
    try:
        yield box
    finally:
        box.server.stop()


def _good_infer(session: requests.Session, url: str, prompt: str = "liver") -> requests.Response:
    return session.post(
        f"{url}/infer/{MODEL}",
        params={"image": "phantom_000", "output": "json"},
        files={"params": (None, json.dumps({"text_prompt": prompt}))},
        timeout=300,
    )


def _send(session: requests.Session, setup: Setup, bad: BadInput) -> requests.Response:
    query = {"image": bad.image, "output": "json", **bad.query}
    files: dict = {"params": (None, bad.params)}
    if bad.upload:
        files["file"] = (bad.upload, (setup.bad_files / bad.upload).read_bytes())
    return session.post(f"{setup.url}/infer/{bad.model}", params=query, files=files, timeout=300)


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=[b.name for b in BAD_INPUTS])
def test_bad_input_gets_a_clear_4xx_and_the_next_infer_works(setup: Setup, bad: BadInput) -> None:
    with requests.Session() as session:  # one keep-alive connection for both requests
        answer = _send(session, setup, bad)
        assert answer.status_code == bad.status, f"{answer.status_code} {answer.text[:300]}\n{setup.server.log_tail()}"
        assert answer.headers["content-type"].startswith("application/json")
        detail = answer.json()["detail"]
        assert isinstance(detail, str) and bad.detail.lower() in detail.lower(), detail
        assert "Traceback" not in answer.text and str(setup.workdir) not in detail  # no server paths leak
        good = _good_infer(session, setup.url)
        assert good.status_code == 200, good.text[:300]
        assert good.json()["label_names"] == {"liver": INDEX["liver"]}


def test_a_good_upload_is_segmented(setup: Setup) -> None:
    """The bad uploads are refused because they are bad, not because uploads fail."""
    answer = requests.post(
        f"{setup.url}/infer/{MODEL}",
        params={"output": "json"},
        files={
            "params": (None, '{"text_prompt": "spleen"}'),
            "file": ("good.nii.gz", (setup.bad_files / "good.nii.gz").read_bytes()),
        },
        timeout=300,
    )
    assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["label_names"] == {"spleen": INDEX["spleen"]}


def test_prompts_are_never_code_or_paths(setup: Setup) -> None:
    before = {p for p in setup.workdir.rglob("*") if "tmp" not in p.parts}
    prompt = "../../../etc/passwd; __import__('os').system('touch pwned'); {{7*7}}"
    answer = _good_infer(requests.Session(), setup.url, prompt)
    assert answer.status_code == 200, answer.text[:300]
    names = answer.json()["label_names"]
    assert set(names) == {"../../../etc/passwd", "__import__('os').system('touch pwned')", "{{7*7}}"}
    after = {p for p in setup.workdir.rglob("*") if "tmp" not in p.parts}
    assert not any("pwned" in p.name or "passwd" in p.name for p in after - before)


def test_eight_concurrent_infers_complete_and_info_stays_responsive(setup: Setup) -> None:
    prompts = ["liver", "spleen", "left kidney", "right kidney", "liver; spleen", "kidney", "colon", "pancreas"]
    info_latencies: list[float] = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(_good_infer, requests.Session(), setup.url, p) for p in prompts]
        time.sleep(1.0)
        while not all(f.done() for f in futures) and len(info_latencies) < 5:
            start = time.monotonic()
            assert requests.get(f"{setup.url}/info/", timeout=30).status_code == 200
            info_latencies.append(time.monotonic() - start)
            still_running = not all(f.done() for f in futures)
            if not still_running:
                info_latencies.pop()  # only count /info answered while an infer was running
            time.sleep(0.3)
        answers = [f.result() for f in futures]
    for prompt, answer in zip(prompts, answers):
        assert answer.status_code == 200, answer.text[:300]
        expected = {name.strip(): INDEX[name.strip()] for name in prompt.split(";")}
        assert answer.json()["label_names"] == expected
    assert info_latencies, "every infer finished before /info could be timed"
    assert max(info_latencies) < 1.0, f"/info latencies during infer: {info_latencies}"


def _train_status(url: str) -> dict:
    return requests.get(f"{url}/train/", params={"check_if_running": "false"}, timeout=30).json()


def _training_processes(server: RunningServer) -> list[psutil.Process]:
    children = psutil.Process(server.process.pid).children(recursive=True)
    return [p for p in children if "train" in " ".join(p.cmdline()) and "monailabel" in " ".join(p.cmdline())]


def test_training_does_not_block_infer_and_a_killed_run_loses_nothing(setup: Setup) -> None:
    served = setup.server.app_dir / "model" / PUBLISHED
    digest = _sha256(served)
    started = requests.post(
        f"{setup.url}/train/{MODEL}", json={"max_epochs": 400, "train_steps_per_epoch": 5}, timeout=60
    )
    assert started.status_code == 200, started.text[:300]
    deadline = time.monotonic() + 120
    while not _training_processes(setup.server) and time.monotonic() < deadline:
        time.sleep(0.5)
    trainers = _training_processes(setup.server)
    assert trainers, f"no training subprocess appeared\n{setup.server.log_tail()}"
    time.sleep(15.0)  # let it load the model and run some steps
    answer = _good_infer(requests.Session(), setup.url, "spleen")
    assert answer.status_code == 200 and answer.json()["label_names"] == {"spleen": INDEX["spleen"]}
    assert all(p.is_running() for p in trainers), "training ended before the infer: it did not run concurrently"
    for process in trainers:
        process.kill()  # SIGKILL, mid-run
    psutil.wait_procs(trainers, timeout=30)
    assert _sha256(served) == digest, "the served checkpoint changed"
    load_checkpoint(served)  # still loadable
    assert not list(served.parent.glob("*.tmp*")), "a temp file was left beside the served checkpoint"
    again = _good_infer(requests.Session(), setup.url, "liver")
    assert again.status_code == 200 and again.json()["label_names"] == {"liver": INDEX["liver"]}
    deadline = time.monotonic() + 60
    while _train_status(setup.url).get("status") in ("SUBMITTED", "RUNNING") and time.monotonic() < deadline:
        time.sleep(1.0)
    assert _train_status(setup.url).get("status") not in ("SUBMITTED", "RUNNING")


def test_saved_label_survives_a_killed_server(setup: Setup) -> None:
    image = nib.load(setup.studies / "phantom_001.nii.gz")
    label = np.zeros(image.shape, np.uint8)
    label[10:20, 10:20, 10:20] = 1
    path = setup.workdir / "phantom_001_label.nii.gz"
    nib.save(nib.Nifti1Image(label, image.affine), path)
    saved = requests.put(
        f"{setup.url}/datastore/label",
        params={"image": "phantom_001", "tag": "final"},
        files={
            "label": (path.name, path.read_bytes()),
            "params": (None, json.dumps({"label_info": [{"name": "liver", "idx": 1}]})),
        },
        timeout=60,
    )
    assert saved.status_code == 200, saved.text[:300]
    setup.server.process.kill()  # no clean shutdown
    setup.server.process.wait(timeout=30)
    setup.server.stop()
    setup.server = start_server(setup.server.app_dir, setup.studies, setup.workdir, conf=CONF)
    listing = requests.get(f"{setup.url}/datastore/", params={"output": "all"}, timeout=60).json()
    assert "final" in listing["objects"]["phantom_001"]["labels"], listing["objects"]["phantom_001"]
    stored = nib.load(setup.studies / "labels" / "final" / "phantom_001.nii.gz")
    assert np.array_equal(np.asarray(stored.dataobj), label)
    assert requests.get(f"{setup.url}/info/", timeout=30).json()["datastore"]["completed"] == 2
