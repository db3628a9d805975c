"""The app under MONAI Label auth (``MONAI_LABEL_AUTH_ENABLE=true``), against a real server subprocess.

MONAI Label validates Keycloak-issued JWTs: it fetches the realm's RSA public key from
``MONAI_LABEL_AUTH_REALM_URI`` (a JSON ``{"public_key": ...}``) and reads roles from ``realm_access.roles``. The test
plays Keycloak's part with a tiny loopback HTTP server and signs tokens itself, so no identity provider is needed.
MONAI Label's own token check refuses every token under PyJWT 2 (no ``algorithms`` argument); the hardened app
replaces it (``textdiffseg_server.auth``), which is what makes the valid-token tests pass.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from server_harness import DEMO_CHECKPOINT, RunningServer, ServerStartError, copy_app, start_server
from textdiffseg.data.phantom import PhantomConfig, write_dataset

pytestmark = pytest.mark.slow

ALL_ROLES = ["monailabel-admin", "monailabel-reviewer", "monailabel-annotator", "monailabel-user"]


class FakeRealm:
    """Serves ``GET /realms/monailabel`` with a freshly generated RSA public key; signs tokens with its private key."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        body = json.dumps({"realm": "monailabel", "public_key": base64.b64encode(der).decode()}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.httpd.server_address[1]}/realms/monailabel"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def token(self, roles: list[str], lifetime_s: int = 600, key: rsa.RSAPrivateKey | None = None) -> str:
        """A signed access token for user ``annotator`` with these realm roles."""
        now = int(time.time())
        claims = {
            "preferred_username": "annotator",
            "email": "annotator@example.org",
            "name": "Test Annotator",
            "realm_access": {"roles": roles},
            "iat": now,
            "exp": now + lifetime_s,
        }
        return jwt.encode(claims, key or self.key, algorithm="RS256")

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture(scope="module")
def realm() -> Iterator[FakeRealm]:
    fake = FakeRealm()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, realm: FakeRealm) -> Iterator[RunningServer]:
    workdir = tmp_path_factory.mktemp("auth")
    studies = workdir / "studies"
    write_dataset(studies, n=1, seed=3, cfg=PhantomConfig(spacing=(6.0, 6.0, 6.0)))
    app_dir = copy_app(workdir / "app", DEMO_CHECKPOINT)
    env = {"MONAI_LABEL_AUTH_ENABLE": "true", "MONAI_LABEL_AUTH_REALM_URI": realm.uri}
    try:
        running = start_server(app_dir, studies, workdir, env=env)
    except ServerStartError as err:
        pytest.fail(str(err))
    yield running
    running.stop()


def _infer(url: str, token: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(
        f"{url}/infer/textdiffseg",
        params={"image": "phantom_000", "output": "json"},
        files={"params": (None, '{"text_prompt": "liver"}')},
        headers=headers,
        timeout=300,
    )


def test_anonymous_requests_are_refused(server: RunningServer) -> None:
    assert requests.get(f"{server.url}/info/", timeout=30).status_code == 401
    answer = _infer(server.url, None)
    assert answer.status_code == 401 and answer.json()["detail"] == "Not authenticated"


def test_a_valid_token_can_read_info_and_segment(server: RunningServer, realm: FakeRealm) -> None:
    headers = {"Authorization": f"Bearer {realm.token(ALL_ROLES)}"}
    info = requests.get(f"{server.url}/info/", headers=headers, timeout=30)
    assert info.status_code == 200 and "textdiffseg" in info.json()["models"]
    answer = _infer(server.url, realm.token(["monailabel-user"]))
    assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["label_names"] == {"liver": 1}


def test_forged_expired_and_role_less_tokens_are_refused(server: RunningServer, realm: FakeRealm) -> None:
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert _infer(server.url, realm.token(ALL_ROLES, key=forger)).status_code == 401
    assert _infer(server.url, realm.token(ALL_ROLES, lifetime_s=-60)).status_code == 401
    assert _infer(server.url, realm.token([])).status_code == 403


def test_only_admins_may_delete_images(server: RunningServer, realm: FakeRealm) -> None:
    annotator = {"Authorization": f"Bearer {realm.token(['monailabel-user', 'monailabel-annotator'])}"}
    url = f"{server.url}/datastore/image"
    refused = requests.delete(url, params={"id": "phantom_000"}, headers=annotator, timeout=30)
    assert refused.status_code == 403 and "monailabel-admin" in refused.json()["detail"]
    assert (Path(server.app_dir).parent / "studies" / "phantom_000.nii.gz").is_file()


def test_only_admins_may_replace_the_model_and_only_with_a_checkpoint(server: RunningServer, realm: FakeRealm) -> None:
    """MONAI Label lets any annotator upload or delete the model; here it takes the admin role."""
    served = Path(server.app_dir) / "model" / "pretrained_textdiffseg.pt"
    before = served.read_bytes()
    url = f"{server.url}/model/textdiffseg"
    annotator = {"Authorization": f"Bearer {realm.token(['monailabel-user', 'monailabel-annotator'])}"}
    admin = {"Authorization": f"Bearer {realm.token(ALL_ROLES)}"}
    refused = requests.put(url, files={"file": ("m.pt", b"garbage")}, headers=annotator, timeout=30)
    assert refused.status_code == 403 and "monailabel-admin" in refused.json()["detail"]
    assert requests.delete(url, headers=annotator, timeout=30).status_code == 403
    assert requests.put(url, files={"file": ("m.pt", b"garbage")}, timeout=30).status_code == 401
    garbage = requests.put(url, files={"file": ("m.pt", b"garbage")}, headers=admin, timeout=30)
    assert garbage.status_code == 400 and "checkpoint" in garbage.json()["detail"]
    assert served.read_bytes() == before and not (served.parent / "textdiffseg.pt").exists()
