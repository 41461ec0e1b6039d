"""A running run's page draws its curves from MLflow as they grow (SQLite, PostgreSQL; a real
MLflow SQLite store): the worker's first heartbeat names the MLflow run, the page refreshes
itself while the run is active and shows every point logged so far."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine

from registry.db import make_session_factory, transaction
from registry.settings import Settings
from tests.support.builders import make_version

POLYLINE = re.compile(r'<polyline class="line [^"]*" points="([^"]*)"><title>(\w+)</title>')


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(tracking URI, artifact root) of one MLflow SQLite store for both backends' tests."""
    root = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{root}/mlflow.db", str(root / "artifacts")


@pytest.fixture
def settings(settings: Settings, mlflow_store: tuple[str, str]) -> Settings:
    """The web settings with the module's MLflow store."""
    uri, artifacts = mlflow_store
    return settings.with_(mlflow_tracking_uri=uri, mlflow_artifact_root=artifacts)


def _lines(html: str) -> dict[str, int]:
    """Series name -> how many points its line has."""
    return {name: len(points.split()) for points, name in POLYLINE.findall(html)}


def test_a_running_runs_page_shows_its_curves_as_they_grow(
    web: FlaskClient, client: FlaskClient, settings: Settings, engine: Engine, auth: Any
) -> None:
    from mlflow.tracking import MlflowClient

    with transaction(make_session_factory(engine)) as s:
        make_version(s, "tiny")
    made = client.post("/api/v1/runs", json={"config": "tiny"}, headers=auth("submitter"))
    run_id = made.get_json()["id"]
    job = client.post("/api/v1/workers/claim", json={"worker": "w1"}, headers=auth("worker"))
    lease = job.get_json()["lease"]
    mlflow = MlflowClient(settings.mlflow_tracking_uri)
    experiment = mlflow.create_experiment(
        f"tiny-{engine.dialect.name}", artifact_location=settings.mlflow_artifact_root
    )
    mlflow_run = mlflow.create_run(experiment).info.run_id
    for step in (1, 2, 3):
        mlflow.log_metric(mlflow_run, "train_loss", 5.0 - step / 10, step=step)

    before = web.get(f"/runs/{run_id}").get_data(as_text=True)
    assert "No curves to draw yet." in before and _lines(before) == {}
    beat = client.post(
        f"/api/v1/runs/{run_id}/heartbeat",
        json={
            "lease": lease,
            "progress": {"phase": "train", "step": 3, "total": 10},
            "mlflow_run_id": mlflow_run,
        },
        headers=auth("worker"),
    )
    assert beat.status_code == 200

    page = web.get(f"/runs/{run_id}").get_data(as_text=True)
    assert 'http-equiv="refresh"' in page and "status-running" in page
    assert mlflow_run in page and _lines(page) == {"train_loss": 3}
    for step in (4, 5, 6, 7):
        mlflow.log_metric(mlflow_run, "train_loss", 5.0 - step / 10, step=step)
    mlflow.log_metric(mlflow_run, "val_loss", 4.6, step=5)
    grown = web.get(f"/runs/{run_id}").get_data(as_text=True)
    assert _lines(grown) == {"train_loss": 7, "val_loss": 1}
