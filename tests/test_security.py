"""Security probes of issue 17 against real servers started both ways (plain ``start_server`` and ``--uvicorn_app``).

Each probe is what an anonymous client on the network could send; each must get a 4xx (or be done safely), and
nothing may be written or read outside the datastore, the sessions and the app's model folder; the served model
must stay byte-identical. A second server started with ``--conf anonymous_admin true`` checks the admin operations
themselves: a ``run_sync`` training keeps ``/info`` answering, a garbage model upload is refused, a stopped training
is reported as stopped, and absurd training sizes are refused.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import requests

from server_harness import (
    ADMIN_CONF,
    DEMO_CHECKPOINT,
    HARDENED_APP,
    RunningServer,
    ServerStartError,
    copy_app,
    start_server,
)
from textdiffseg.data.phantom import PhantomConfig, write_dataset

pytestmark = pytest.mark.slow

MODEL = "textdiffseg"
CONF = {"max_voxels": "2000000", "train_steps_per_epoch": "2"}


@dataclass
class Site:
    """A running server and the folders it must stay inside."""

    server: RunningServer
    workdir: Path
    studies: Path
    outside: Path  # a folder no request may touch

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def served(self) -> Path:
        return self.server.app_dir / "model" / "pretrained_textdiffseg.pt"


def _start(tmp: Path, conf: dict[str, str], uvicorn_app: str | None) -> Site:
    studies = tmp / "studies"
    write_dataset(studies, n=2, seed=3, cfg=PhantomConfig(spacing=(6.0, 6.0, 6.0)))
    app_dir = copy_app(tmp / "app", DEMO_CHECKPOINT)
    outside = tmp / "outside"
    outside.mkdir()
    try:
        server = start_server(app_dir, studies, tmp, conf=conf, uvicorn_app=uvicorn_app)
    except ServerStartError as err:
        pytest.fail(str(err))
    return Site(server, tmp, studies, outside)


@pytest.fixture(scope="module", params=["plain start_server", "--uvicorn_app"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """An anonymous-access server (the default: auth off, no admin), started each way."""
    uvicorn_app = None if request.param == "plain start_server" else HARDENED_APP
    box = _start(tmp_path_factory.mktemp("security"), CONF, uvicorn_app)
    yield box
    box.server.stop()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tar(members: list[tarfile.TarInfo]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for member in members:
            archive.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    return buffer.getvalue()


def _member(name: str, link: str | None = None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    if link is not None:
        info.type, info.linkname = tarfile.SYMTYPE, link
    else:
        info.size = 4
    return info


def _infer(url: str, image: str = "phantom_000", **params: object) -> requests.Response:
    return requests.post(
        f"{url}/infer/{MODEL}",
        params={"image": image, "output": "json"},
        files={"params": (None, json.dumps({"text_prompt": "liver", **params}))},
        timeout=300,
    )


def _detail(answer: requests.Response) -> str:
    assert answer.headers["content-type"].startswith("application/json"), answer.text[:200]
    return str(answer.json()["detail"])


def test_traversal_through_ids_and_tags_writes_nothing_outside(site: Site) -> None:
    victim = site.outside / "victim"
    rel = f"../../../../../../..{victim}"
    payload = {"file": ("payload", b"import os\n")}
    probes = [
        requests.put(f"{site.url}/datastore/image", params={"image": rel}, files=payload, timeout=60),
        requests.put(
            f"{site.url}/datastore/label",
            params={"image": "phantom_000", "tag": rel},
            files={"label": ("x.nii.gz", b"garbage")},
            timeout=60,
        ),
        requests.put(f"{site.url}/datastore/image/info", params={"image": rel}, data={"info": "{}"}, timeout=60),
        _infer(site.url, label_tag=rel, save_label=True),
    ]
    for answer in probes:
        assert answer.status_code == 400, answer.text[:300]
        assert "not allowed" in _detail(answer)
    assert list(site.outside.iterdir()) == []


def test_archives_cannot_escape_or_link_out_of_the_session_folder(site: Site) -> None:
    escape = _tar([_member(f"../../../../../../..{site.outside}/escaped")])
    link = _tar([_member("leak.nii.gz", link="/etc/passwd")])
    for archive, fragment in ((escape, "'..' path"), (link, "not a plain file")):
        answer = requests.put(
            f"{site.url}/session/", params={"uncompress": "true"}, files={"files": ("a.tar", archive)}, timeout=60
        )
        assert answer.status_code == 400 and fragment in _detail(answer), answer.text[:300]
    assert list(site.outside.iterdir()) == []
    good = _tar([_member("series/a.dcm"), _member("series/b.dcm")])
    answer = requests.put(
        f"{site.url}/session/", params={"uncompress": "true"}, files={"files": ("a.tar", good)}, timeout=60
    )
    assert answer.status_code == 200, answer.text[:300]
    assert str(site.workdir) not in answer.text, "a server path leaked in the session info"


def test_stored_files_are_checked_before_anything_is_written(site: Site) -> None:
    final = site.studies / "labels" / "final" / "phantom_000.nii.gz"
    before = final.read_bytes()
    image = nib.load(site.studies / "phantom_000.nii.gz")
    wrong_grid = nib.Nifti1Image(np.zeros((5, 5, 5), np.uint8), image.affine)
    uploads = {
        "zero-byte label": b"",
        "label of another grid": wrong_grid.to_bytes(),
        "not an image": b"import os\n",
    }
    for name, content in uploads.items():
        answer = requests.put(
            f"{site.url}/datastore/label",
            params={"image": "phantom_000", "tag": "final"},
            files={"label": ("label.nii", content)},
            timeout=60,
        )
        assert answer.status_code == 400, f"{name}: {answer.status_code} {answer.text[:300]}"
        assert str(site.workdir) not in _detail(answer)
    assert final.read_bytes() == before
    script = requests.put(
        f"{site.url}/datastore/image", params={"image": "evil"}, files={"file": ("evil.py", b"import os\n")}, timeout=60
    )
    assert script.status_code == 400, script.text[:300]
    assert not list(site.studies.glob("evil*"))


def test_server_paths_are_never_read_and_answers_give_no_existence_oracle(site: Site) -> None:
    existing, missing = _infer(site.url, image="/etc/passwd"), _infer(site.url, image="/etc/no_such_file")
    assert existing.status_code == missing.status_code == 400
    assert _detail(existing).replace("/etc/passwd", "X") == _detail(missing).replace("/etc/no_such_file", "X")
    smuggled = requests.post(
        f"{site.url}/infer/{MODEL}",
        params={"image": "phantom_000", "output": "json"},
        files={"params": (None, json.dumps({"text_prompt": "liver", "image": "/etc/passwd"}))},
        timeout=60,
    )
    assert smuggled.status_code == 400 and "may not set 'image'" in _detail(smuggled)
    download = requests.get(f"{site.url}/datastore/image", params={"image": "../../../etc/passwd"}, timeout=60)
    assert download.status_code == 400 and "root:" not in download.text


def test_anonymous_clients_cannot_take_the_model_away_or_run_admin_operations(site: Site) -> None:
    digest = _sha256(site.served)
    answers = {
        "PUT /model": requests.put(f"{site.url}/model/{MODEL}", files={"file": ("m.pt", b"garbage")}, timeout=60),
        "DELETE /model": requests.delete(f"{site.url}/model/{MODEL}", timeout=60),
        "POST /reload": requests.post(f"{site.url}/reload", timeout=60),
        "GET /logs": requests.get(f"{site.url}/logs/", timeout=60),
        "POST /train": requests.post(f"{site.url}/train/{MODEL}", params={"run_sync": "true"}, json={}, timeout=60),
        "POST /batch/infer": requests.post(f"{site.url}/batch/infer/{MODEL}", timeout=60),
        "DELETE /datastore/image": requests.delete(
            f"{site.url}/datastore/image", params={"id": "phantom_000"}, timeout=60
        ),
    }
    for name, answer in answers.items():
        assert answer.status_code == 403, f"{name}: {answer.status_code} {answer.text[:200]}"
        assert "anonymous_admin" in _detail(answer)
    wsi = requests.post(f"{site.url}/infer/wsi_v2/{MODEL}", params={"image": "phantom_000"}, timeout=60)
    assert wsi.status_code == 404
    assert _sha256(site.served) == digest
    assert (site.studies / "phantom_000.nii.gz").is_file()
    good = _infer(site.url)
    assert good.status_code == 200 and good.json()["label_names"] == {"liver": 1}, good.text[:300]


def test_a_refused_upload_leaves_no_temp_file(site: Site) -> None:
    temp = site.workdir / "tmp"
    before = set(temp.rglob("*"))
    flat = nib.Nifti1Image(np.zeros((32, 32), np.int16), np.eye(4))
    buffer = io.BytesIO(flat.to_bytes())
    answer = requests.post(
        f"{site.url}/infer/{MODEL}",
        params={"output": "json"},
        files={"params": (None, '{"text_prompt": "liver"}'), "file": ("flat.nii", buffer.getvalue())},
        timeout=60,
    )
    assert answer.status_code == 400, answer.text[:300]
    time.sleep(0.5)
    left = {p for p in set(temp.rglob("*")) - before if p.is_file() and p.suffix in (".nii", ".gz")}
    assert not left, f"temp files left behind: {sorted(p.name for p in left)}"


@pytest.fixture(scope="module")
def admin_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A plain-start server whose operator allowed admin operations without auth (a single-user machine); its
    training runs are published unscored (the publish gate has its own tests and takes minutes here)."""
    box = _start(tmp_path_factory.mktemp("security_admin"), {**CONF, **ADMIN_CONF, "publish_gate": "false"}, None)
    yield box
    box.server.stop()


def test_admin_model_upload_must_be_a_checkpoint(admin_site: Site) -> None:
    published = admin_site.server.app_dir / "model" / "textdiffseg.pt"
    answer = requests.put(f"{admin_site.url}/model/{MODEL}", files={"file": ("m.pt", b"not a checkpoint")}, timeout=60)
    assert answer.status_code == 400 and "checkpoint" in _detail(answer), answer.text[:300]
    assert not published.exists()
    assert _infer(admin_site.url).status_code == 200
    uploaded = requests.put(
        f"{admin_site.url}/model/{MODEL}", files={"file": ("m.pt", DEMO_CHECKPOINT.read_bytes())}, timeout=60
    )
    assert uploaded.status_code == 200, uploaded.text[:300]
    assert _sha256(published) == _sha256(DEMO_CHECKPOINT)


def test_absurd_training_sizes_are_refused(admin_site: Site) -> None:
    answer = requests.post(
        f"{admin_site.url}/train/{MODEL}",
        params={"run_sync": "true"},
        json={"max_epochs": 10000, "train_steps_per_epoch": 1000000},
        timeout=120,
    )
    assert 400 <= answer.status_code < 500, answer.text[:300]


def test_run_sync_training_does_not_hold_info_and_a_stop_is_reported(admin_site: Site) -> None:
    (admin_site.studies / "labels" / "final").mkdir(parents=True, exist_ok=True)
    result: dict[str, requests.Response] = {}

    def train() -> None:
        result["train"] = requests.post(
            f"{admin_site.url}/train/{MODEL}",
            params={"run_sync": "true"},
            json={"max_epochs": 2, "train_steps_per_epoch": 2, "name": "sync_run", "rehearsal": False},
            timeout=600,
        )

    worker = threading.Thread(target=train)
    worker.start()
    latencies = []
    while worker.is_alive() and len(latencies) < 20:
        start = time.monotonic()
        assert requests.get(f"{admin_site.url}/info/", timeout=30).status_code == 200
        latencies.append(time.monotonic() - start)
        time.sleep(0.5)
    worker.join(timeout=600)
    assert result["train"].status_code == 200, result["train"].text[:300]
    assert len(latencies) >= 2, "training finished before /info could be timed"
    assert max(latencies) < 1.0, f"/info latencies during a run_sync training: {latencies}"
    started = requests.post(
        f"{admin_site.url}/train/{MODEL}", json={"max_epochs": 1000, "train_steps_per_epoch": 5}, timeout=60
    )
    assert started.status_code == 200, started.text[:300]
    time.sleep(5.0)
    stopped = requests.delete(f"{admin_site.url}/train/", timeout=60)
    assert stopped.status_code == 200, stopped.text[:300]
    stats = requests.get(f"{admin_site.url}/info/", timeout=30).json()["train_stats"][MODEL]
    assert stats.get("status") != "RUNNING", stats
    assert str(admin_site.workdir) not in json.dumps(stats), "a server path leaked in train_stats"
