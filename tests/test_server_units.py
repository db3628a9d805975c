"""Unit tests of the hardened ASGI layer (``textdiffseg_server``) and of source-level security rules."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient
from monailabel.interfaces.exception import MONAILabelError, MONAILabelException

from textdiffseg_server.errors import JSONErrorMiddleware, error_answer
from textdiffseg_server.form_guard import Utf8FieldGuard, params_encoding_error
from textdiffseg_server.infer_checks import parse_params

ROOT = Path(__file__).resolve().parents[1]
OUR_CODE = [ROOT / "textdiffseg", ROOT / "textdiffseg_server", ROOT / "apps" / "textdiffseg_app"]


def _probe_app() -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict:
        form = await request.form()
        return {"params": form.get("params"), "encoding_error": params_encoding_error(request)}

    @app.get("/boom")
    async def boom() -> None:
        raise MONAILabelException(MONAILabelError.INVALID_INPUT, "There is no such strategy 'x'")

    @app.get("/crash")
    async def crash() -> None:
        raise KeyError("secret internals")

    app.add_middleware(Utf8FieldGuard)
    app.add_middleware(JSONErrorMiddleware)
    return app


def test_utf8_guard_flags_raw_bytes_but_not_real_unicode() -> None:
    client = TestClient(_probe_app())
    good = client.post("/echo", files={"params": (None, json.dumps({"text_prompt": "foie (hépatique)"}))}).json()
    assert good["encoding_error"] is None and "hépatique" in json.loads(good["params"])["text_prompt"]
    bad = client.post("/echo", files={"params": (None, b'{"text_prompt": "liver \xff\xfe"}')}).json()
    assert "not valid UTF-8" in bad["encoding_error"]
    other_field = client.post("/echo", files={"notes": (None, b"\xff"), "params": (None, b"{}")}).json()
    assert other_field["encoding_error"] is None


def test_escaped_errors_become_json_answers_without_internals() -> None:
    client = TestClient(_probe_app(), raise_server_exceptions=False)
    refused = client.get("/boom")
    assert refused.status_code == 400 and refused.json() == {"detail": "There is no such strategy 'x'"}
    crashed = client.get("/crash")
    assert crashed.status_code == 500 and "KeyError" in crashed.json()["detail"]
    assert "secret internals" not in crashed.text
    assert error_answer(json.JSONDecodeError("Expecting value", "{", 1))[0] == 400


@pytest.mark.parametrize(
    ("params", "message"),
    [('{"text_prompt": ', "not valid JSON"), ("[1, 2]", "JSON object"), ('"liver"', "JSON object")],
)
def test_params_must_be_a_json_object(params: str, message: str) -> None:
    with pytest.raises(HTTPException) as caught:
        parse_params(params)
    assert caught.value.status_code == 400 and message in caught.value.detail


def test_params_parse() -> None:
    assert parse_params('{"text_prompt": "liver"}') == {"text_prompt": "liver"}
    assert parse_params("") == {} and parse_params(None) == {}


def _python_files() -> list[Path]:
    return [p for folder in OUR_CODE for p in folder.rglob("*.py")]


def _is_torch_load(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "load"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "torch"
    )


def test_every_torch_load_is_weights_only() -> None:
    calls = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if _is_torch_load(node):
                weights_only = [k for k in node.keywords if k.arg == "weights_only"]
                calls.append((path, weights_only and getattr(weights_only[0].value, "value", None) is True))
    assert calls, "expected at least one torch.load (the checkpoint loader)"
    unsafe = [str(p) for p, ok in calls if not ok]
    assert not unsafe, f"torch.load without weights_only=True in {unsafe}"


def test_no_pickle_eval_or_exec_in_our_code() -> None:
    banned_modules = {"pickle", "cPickle", "dill", "marshal", "shelve"}
    found = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                found += [f"{path}: import {n}" for n in names if n.split(".")[0] in banned_modules]
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in {"eval", "exec"}:
                found.append(f"{path}: {node.func.id}()")
    assert not found, found
