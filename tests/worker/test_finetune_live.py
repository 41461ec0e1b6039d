"""A fine-tune through the API and a real worker (real daemon, training, MLflow store, the
service over HTTP; SQLite and PostgreSQL): queued with from_run, it names its parent, and its
reproduce re-queues it from the same parent and comes out identical on the CPU."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine

from registry.client import API, Client
from registry.db import make_session_factory, transaction
from registry.services import configs
from tests.support.procs import serve_in_thread
from tests.support.worker import tiny_doc
from worker.daemon import Daemon, Options, StopSignal
from worker.execute import execute


@pytest.mark.slow
def test_a_fine_tune_through_the_api_names_its_parent_and_reproduces_identically(
    app: Flask,
    engine: Engine,
    tokens: dict[str, str],
    tracker_factory: Callable[[], Any],
    tmp_path: Path,
) -> None:
    parent_doc = tiny_doc(training={"num_training_steps": 10, "eval_every_steps": 5})
    child_doc = tiny_doc(
        training={"num_training_steps": 4, "eval_every_steps": 2, "learning_rate": 1e-3}
    )
    with transaction(make_session_factory(engine)) as s:
        configs.create_config(s, "parent", parent_doc, message="m", created_by="t")
        configs.create_config(s, "child", child_doc, message="m", created_by="t")
    with serve_in_thread(app) as url:
        submit = Client(url, tokens["submitter"])

        def work(run: dict[str, Any]) -> dict[str, Any]:
            options = Options(state_dir=tmp_path / "state", once=True, poll_min=0.05, name="w")
            worker = Client(url, tokens["worker"], retries=0)
            daemon = Daemon(
                worker, worker, execute, tracker_factory(), "cpu", options, StopSignal()
            )
            assert daemon.work() == 0
            done: dict[str, Any] = submit.request("GET", f"{API}/runs/{run['id']}")
            assert done["status"] == "succeeded", done["error"]
            return done

        parent = work(submit.request("POST", f"{API}/runs", json={"config": "parent"}))
        body = {"config": "child", "kind": "train", "from_run": parent["id"]}
        fine = work(submit.request("POST", f"{API}/runs", json=body))
        copy = work(submit.request("POST", f"{API}/runs/{fine['id']}/reproduce"))
    assert fine["from_run"] == copy["from_run"] == parent["id"]
    assert fine["provenance"]["from_run"] == parent["id"]
    assert fine["provenance"]["from_mlflow_run_id"] == parent["mlflow_run_id"]
    assert copy["provenance"]["from_weights_sha256"] == fine["provenance"]["from_weights_sha256"]
    assert copy["reproduces"] == fine["id"] and copy["identical"] is True, copy["reproduction"]
    assert copy["metrics"]["val_loss"] == fine["metrics"]["val_loss"]
    assert fine["metrics"]["val_loss"] < parent["metrics"]["val_loss"] + 0.5
