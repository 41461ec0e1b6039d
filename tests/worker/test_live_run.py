"""The worker names its MLflow run with its first heartbeat, sent as soon as ``execute`` opened
the run, long before a third of the lease (real daemon, real training of the tiny model, real
MLflow SQLite store, the real service over HTTP; SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request
from sqlalchemy import Engine

from registry.client import API, Client
from registry.db import make_session_factory, transaction
from registry.services import configs, queue
from tests.support.procs import serve_in_thread
from tests.support.worker import tiny_doc
from worker.daemon import Daemon, Options, StopSignal
from worker.execute import execute


def _record_reports(app: Flask) -> list[tuple[str, dict[str, Any], str]]:
    """(route, body, run status then) of every report the worker sends, in order."""
    seen: list[tuple[str, dict[str, Any], str]] = []
    lock = threading.Lock()

    @app.before_request
    def _record() -> None:
        kind = request.path.rsplit("/", 1)[-1]
        if request.method == "POST" and kind in ("heartbeat", "complete", "release"):
            run_id = int(request.path.split("/")[-2])
            with transaction(make_session_factory(app.extensions["registry"].engine)) as s:
                status = queue.get_run(s, run_id).status
            with lock:
                seen.append((kind, dict(request.get_json(silent=True) or {}), status))

    return seen


@pytest.mark.slow
def test_the_first_heartbeat_carries_the_mlflow_run_id(
    app: Flask,
    engine: Engine,
    tokens: dict[str, str],
    tracker_factory: Callable[[], Any],
    tmp_path: Path,
) -> None:
    with transaction(make_session_factory(engine)) as s:
        added = configs.create_config(
            s,
            "live",
            tiny_doc(training={"num_training_steps": 6, "eval_every_steps": 3}),
            message="m",
            created_by="t",
        )
        run_id = queue.enqueue(s, added.version, "train").id
    reports = _record_reports(app)
    with serve_in_thread(app) as url:
        options = Options(state_dir=tmp_path / "state", once=True, poll_min=0.05, name="w-live")
        token = tokens["worker"]
        daemon = Daemon(
            Client(url, token, retries=0),
            Client(url, token, retries=0),
            execute,
            tracker_factory(),
            "cpu",
            options,
            StopSignal(),
        )
        assert daemon.work() == 0
        final = Client(url, tokens["viewer"]).request("GET", f"{API}/runs/{run_id}")
    assert final["status"] == "succeeded" and final["mlflow_run_id"]
    kinds = [kind for kind, _, _ in reports]
    assert kinds[0] == "heartbeat" and kinds[-1] == "complete", kinds  # lease 60 s: beats 20 s
    _, body, status = reports[0]
    assert status == "running" and body["mlflow_run_id"] == final["mlflow_run_id"]
    assert all(b.get("mlflow_run_id") == final["mlflow_run_id"] for k, b, _ in reports)
