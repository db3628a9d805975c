"""Replace MONAI Label's routes where they block the event loop or trust client input (used by ``install``).

* Every ``async def`` endpoint of MONAI Label that does synchronous work (file copies, datastore scans, a
  ``run_sync=true`` training or scoring run) is re-registered as a plain ``def`` running that same endpoint in
  FastAPI's worker threads, so one request never holds ``/info`` and the rest. (The DICOMweb proxy really awaits and
  is left as is.) Synchronous ``run_sync`` runs of train/scoring/batch-infer are one at a time (429 otherwise).
* ``POST /infer/{model}``: ``infer_endpoint`` (validated, temp files removed on every path).
* ``PUT /session/``: ``session_endpoint`` (file names checked, archives extracted safely or refused).
* ``PUT /model/{model}``: ``model_endpoint`` (only a loadable TextDiffSeg checkpoint replaces the served one,
  atomically). ``DELETE /train/``: stops the run and records it as stopped in the training stats;
  ``GET /train/?check_if_running=true``: 204 rather than 404 when no training runs.
* ``/infer/wsi*``: removed (``policy`` answers 404).
* ``GET /ohif/<MONAI Label plugin bundle>``: ``ohif_plugin`` (Class Prompts buttons from the model's
  ``label_groups``).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.routing import APIRoute, APIRouter
from monailabel.config import settings
from monailabel.endpoints import (
    activelearning,
    batch_infer,
    datastore,
    infer,
    info,
    logs,
    model,
    ohif,
    scoring,
    session,
    train,
    wsi_infer,
)
from monailabel.interfaces.utils.app import app_instance

from textdiffseg_server import infer_endpoint, model_endpoint, ohif_plugin, session_endpoint, train_endpoint

THREADED_ROUTERS = (activelearning, batch_infer, datastore, info, infer, logs, model, ohif, scoring, session, train)
SYNC_RUN_PATHS = ("/train", "/scoring", "/batch/infer")
# (MONAI Label router, path, method) -> our router that serves it instead
REPLACED: list[tuple[Any, str, str, APIRouter]] = [
    (infer, "/infer/{model}", "POST", infer_endpoint.router),
    (session, "/session/", "PUT", session_endpoint.router),
    (model, "/model/{model}", "PUT", model_endpoint.router),
    (train, "/train/", "DELETE", train_endpoint.router),
    (train, "/train/", "GET", train_endpoint.router),
]

TRAIN_PATH = "/train/{model}"

_sync_run_lock = threading.Lock()


def check_train_request(model: str, params: dict[str, Any] | None) -> None:
    """404 for an unknown trainer; 400 when the trainer's ``check_request`` refuses the parameters.

    Checked before MONAI Label starts the run, so a bad request is a 400 now rather than a failed background task
    (or a 500 with ``run_sync``).
    """
    trainer = getattr(app_instance(), "_trainers", {}).get(model)
    if trainer is None:
        raise HTTPException(404, f"unknown trainer '{model[:80]}'")
    check = getattr(trainer, "check_request", None)
    if check is not None:
        try:
            check(dict(params or {}))
        except ValueError as err:
            raise HTTPException(400, str(err).splitlines()[0][:300]) from err


def _in_worker_thread(endpoint: Callable[..., Any], path: str) -> Callable[..., Any]:
    """A plain-``def`` twin of an ``async def`` endpoint that never awaits: FastAPI runs it in a worker thread."""

    def run(*args: Any, **kwargs: Any) -> Any:
        if path == TRAIN_PATH:
            check_train_request(kwargs["model"], kwargs.get("params"))
        if kwargs.get("run_sync") and path.startswith(SYNC_RUN_PATHS):
            if not _sync_run_lock.acquire(blocking=False):
                raise HTTPException(429, "another run_sync task is running; retry when it has finished")
            try:
                return asyncio.run(endpoint(*args, **kwargs))
            finally:
                _sync_run_lock.release()
        return asyncio.run(endpoint(*args, **kwargs))

    run.__signature__ = inspect.signature(endpoint)  # type: ignore[attr-defined]  # FastAPI reads parameters here
    run.__name__ = endpoint.__name__
    run.__doc__ = endpoint.__doc__
    return run


def _threaded_copy(route: APIRoute) -> APIRoute:
    return APIRoute(
        route.path,
        _in_worker_thread(route.endpoint, route.path),
        methods=route.methods,
        name=route.name,
        summary=route.summary,
        tags=route.tags,
        dependencies=route.dependencies,
        deprecated=route.deprecated,
        include_in_schema=route.include_in_schema,
        response_class=route.response_class,
        dependency_overrides_provider=route.dependency_overrides_provider,
    )


def _is_replaced(module: Any, route: APIRoute) -> bool:
    return any(
        module is mod and route.path == path and method in route.methods for mod, path, method, _ in REPLACED
    )


def replace_routes(app: FastAPI) -> None:
    """Apply the module docstring's replacements to MONAI Label's routers (in place, before serving)."""
    for module in (*THREADED_ROUTERS, wsi_infer):
        router: APIRouter = module.router
        kept = []
        for route in router.routes:
            if module is wsi_infer or (isinstance(route, APIRoute) and _is_replaced(module, route)):
                continue
            threaded = isinstance(route, APIRoute) and inspect.iscoroutinefunction(route.endpoint)
            kept.append(_threaded_copy(route) if threaded else route)
        router.routes[:] = kept
        if hasattr(router, "_mark_routes_changed"):  # FastAPI >= 0.160 caches the effective routes per version
            router._mark_routes_changed()
    ohif_plugin.install(ohif.router)  # OHIF's Class Prompts buttons from /info's label_groups
    if hasattr(ohif.router, "_mark_routes_changed"):
        ohif.router._mark_routes_changed()
    for ours in {id(r): r for *_, r in REPLACED}.values():
        app.include_router(ours, prefix=settings.MONAI_LABEL_API_STR)
