"""A run page that waits on MLflow holds no transaction: heartbeats go on meanwhile (SQLite,
PostgreSQL). MLflow here is a tracking server over HTTP that holds each request until the test
lets it go (tests/support/slowmlflow.py): MLflow's own REST client really waits on it."""

from __future__ import annotations

import threading
import time
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import Engine

from registry.db import make_session_factory, transaction
from registry.http.app import create_app
from registry.settings import Settings
from tests.support.builders import make_version
from tests.support.slowmlflow import slow_mlflow
from tests.support.web import sign_in

MLFLOW_RUN = "f" * 32


def _running(api: FlaskClient, headers: Any) -> tuple[int, str]:
    """A claimed run whose worker reported its MLflow run: (run id, lease)."""
    api.post("/api/v1/runs", json={"config": "tiny"}, headers=headers("submitter"))
    job = api.post("/api/v1/workers/claim", json={"worker": "w1"}, headers=headers("worker"))
    run_id, lease = job.get_json()["run"]["id"], job.get_json()["lease"]
    first = api.post(
        f"/api/v1/runs/{run_id}/heartbeat",
        json={"lease": lease, "mlflow_run_id": MLFLOW_RUN},
        headers=headers("worker"),
    )
    assert first.status_code == 200
    return run_id, lease


def test_a_heartbeat_is_answered_while_a_run_page_waits_on_mlflow(
    settings: Settings, engine: Engine, auth: Any, tokens: dict[str, str]
) -> None:
    with transaction(make_session_factory(engine)) as s:
        make_version(s, "tiny")
    with slow_mlflow() as mlflow:
        app = create_app(settings.with_(mlflow_tracking_uri=mlflow.uri), engine=engine)
        api, pages = app.test_client(), app.test_client()
        sign_in(pages, tokens["viewer"])
        run_id, lease = _running(api, auth)
        page: list[Any] = []
        viewer = threading.Thread(target=lambda: page.append(pages.get(f"/runs/{run_id}")))
        viewer.start()
        assert mlflow.arrived.wait(60), "the page never asked MLflow"
        # The page is inside MLflow's read now, and stays there until released.
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        answers: list[Any] = []
        started = time.monotonic()
        beat = threading.Thread(
            target=lambda: answers.append(
                api.post(
                    f"/api/v1/runs/{run_id}/heartbeat",
                    json={"lease": lease, "progress": {"step": 1}},
                    headers=auth("worker"),
                )
            )
        )
        beat.start()
        beat.join(20)
        took = time.monotonic() - started
        assert not beat.is_alive(), "the heartbeat waited behind the page"
        assert viewer.is_alive() and not page, "the page stopped waiting on MLflow"
        mlflow.release.set()
        viewer.join(60)
    assert answers[0].status_code == 200, answers[0].get_data(as_text=True)
    assert took < 10  # the page holds MLflow for up to 60 s; the beat never waited on it
    html = page[0].get_data(as_text=True)
    assert page[0].status_code == 200 and f"MLflow could not show run {MLFLOW_RUN}" in html
    assert mlflow.paths and MLFLOW_RUN in mlflow.paths[0]
