"""The reap that finishes a run (its last attempt's worker lost for good) marks that attempt's
MLflow run KILLED, after its transaction; a real MLflow SQLite store, SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from sqlalchemy import Engine

from registry.db import make_session_factory, transaction
from registry.services import queue
from registry.services.lost_attempts import kill_mlflow_runs
from registry.services.reaper import reap_once
from tests.support.builders import make_version


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"
    MlflowClient(uri).search_experiments()  # the tables, once (3 s)
    return uri


def _running(uri: str) -> str:
    """A new MLflow run left RUNNING, as a killed worker leaves it."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name("lost")
    experiment = found.experiment_id if found else client.create_experiment("lost")
    return str(client.create_run(experiment).info.run_id)


def _status(uri: str, mlflow_run_id: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri).get_run(mlflow_run_id).info.status


def test_the_reap_that_fails_a_run_as_worker_lost_kills_its_last_mlflow_run(
    engine: Engine, mlflow_uri: str
) -> None:
    factory = make_session_factory(engine)
    with transaction(factory) as s:
        run_id = queue.enqueue(s, make_version(s), "train").id
    reported = []
    for attempt in (1, 2, 3):
        mlflow_run_id = _running(mlflow_uri)
        reported.append(mlflow_run_id)
        with transaction(factory) as s:  # claimed, one heartbeat naming its MLflow run, lost
            now = queue.db_now(s)
            claim = queue.claim(s, f"w{attempt}", ["default"], now, lease_seconds=0)
            assert claim is not None and claim.run.attempt == attempt
            queue.heartbeat(s, run_id, claim.lease, now, 0, {"step": 1}, mlflow_run_id)
        time.sleep(0.05)
        assert reap_once(factory, mlflow_uri) == [run_id]
    # Attempts 1 and 2 were requeued: the workers that claimed the next attempts end those
    # (worker/lost.py); the third has no next attempt, so the reap ended it.
    assert [_status(mlflow_uri, i) for i in reported] == ["RUNNING", "RUNNING", "KILLED"]
    with factory() as s:
        run = queue.get_run(s, run_id)
        assert (run.status, run.error["kind"]) == ("failed", "worker_lost")  # type: ignore[index]


def test_ending_lost_runs_leaves_ended_ones_and_survives_a_missing_one(mlflow_uri: str) -> None:
    from mlflow.tracking import MlflowClient

    finished = _running(mlflow_uri)
    MlflowClient(mlflow_uri).set_terminated(finished, "FINISHED")
    running = _running(mlflow_uri)
    assert kill_mlflow_runs(mlflow_uri, ["no-such-run", finished, running]) == [running]
    assert (_status(mlflow_uri, finished), _status(mlflow_uri, running)) == ("FINISHED", "KILLED")
    assert kill_mlflow_runs(mlflow_uri, []) == []


def test_a_claims_reap_requeues_at_once_but_leaves_finishing_to_the_reaper(
    engine: Engine,
) -> None:
    """So that the reaper thread, which also ends the MLflow run, finishes lost runs; without
    one (REGISTRY_REAP_INTERVAL=0) a claim finishes them CLAIM_FINISH_AFTER past expiry."""
    factory = make_session_factory(engine)
    t0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    with transaction(factory) as s:
        run_id = queue.enqueue(s, make_version(s), "train").id
    for attempt in (1, 2, 3):
        with transaction(factory) as s:  # each claim's reap requeued the one before at once
            claim = queue.claim(s, "w", ["default"], t0 + dt.timedelta(seconds=attempt), 0)
            assert claim is not None and claim.run.attempt == attempt
    just_after = t0 + dt.timedelta(seconds=4)
    with transaction(factory) as s:
        assert queue.claim(s, "w", ["default"], just_after, 60) is None
        assert queue.get_run(s, run_id).status == "running"  # the reaper's to finish
    later = just_after + queue.CLAIM_FINISH_AFTER
    with transaction(factory) as s:
        assert queue.claim(s, "w", ["default"], later, 60) is None
        run = queue.get_run(s, run_id)
        assert (run.status, run.error["kind"]) == ("failed", "worker_lost")  # type: ignore[index]
