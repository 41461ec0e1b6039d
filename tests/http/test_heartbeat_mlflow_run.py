"""The attempt's MLflow run reaches the service with its first heartbeat (SQLite, PostgreSQL):
``GET /runs/<id>`` shows it while the run trains; it is fenced like every report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine

from registry.db import make_session_factory, transaction
from tests.support.builders import make_version

Auth = Callable[..., dict[str, str]]
A, B = "a" * 32, "b" * 32


@pytest.fixture
def claimed(client: FlaskClient, engine: Engine, auth: Auth) -> dict[str, Any]:
    """A queued run claimed by worker w1: the claim's answer."""
    with transaction(make_session_factory(engine)) as s:
        make_version(s, "tiny")
    client.post("/api/v1/runs", json={"config": "tiny"}, headers=auth("submitter"))
    answer = client.post("/api/v1/workers/claim", json={"worker": "w1"}, headers=auth("worker"))
    return answer.get_json()  # type: ignore[no-any-return]


def beat(client: FlaskClient, auth: Auth, run_id: int, **body: Any) -> Any:
    return client.post(f"/api/v1/runs/{run_id}/heartbeat", json=body, headers=auth("worker"))


def shown(client: FlaskClient, auth: Auth, run_id: int) -> dict[str, Any]:
    return client.get(f"/api/v1/runs/{run_id}", headers=auth("viewer")).get_json()  # type: ignore[no-any-return]


def test_the_first_heartbeat_names_the_mlflow_run_shown_while_running(
    client: FlaskClient, auth: Auth, claimed: dict[str, Any]
) -> None:
    run_id, lease = claimed["run"]["id"], claimed["lease"]
    assert shown(client, auth, run_id)["mlflow_run_id"] is None
    first = beat(client, auth, run_id, lease=lease, progress={"phase": "started"}, mlflow_run_id=A)
    assert first.status_code == 200 and first.get_json()["mlflow_run_id"] == A
    run = shown(client, auth, run_id)
    assert (run["status"], run["mlflow_run_id"], run["progress"]["phase"]) == (
        "running",
        A,
        "started",
    )
    # Later beats: the same id again, or none at all, change nothing about it.
    assert beat(client, auth, run_id, lease=lease, mlflow_run_id=A).status_code == 200
    later = beat(client, auth, run_id, lease=lease, progress={"phase": "train", "step": 3})
    assert later.status_code == 200 and later.get_json()["mlflow_run_id"] == A
    run = shown(client, auth, run_id)
    assert (run["mlflow_run_id"], run["progress"]["step"]) == (A, 3)
    assert run["progress"]["mlflow_run_id"] == A


def test_another_mlflow_run_in_the_same_attempt_is_409_and_changes_nothing(
    client: FlaskClient, auth: Auth, claimed: dict[str, Any]
) -> None:
    run_id, lease = claimed["run"]["id"], claimed["lease"]
    assert beat(client, auth, run_id, lease=lease, mlflow_run_id=A).status_code == 200
    before = shown(client, auth, run_id)
    swapped = beat(client, auth, run_id, lease=lease, progress={"step": 9}, mlflow_run_id=B)
    assert swapped.status_code == 409
    assert swapped.get_json()["code"] == "mlflow_run_mismatch"
    assert swapped.get_json()["mlflow_run_id"] == A
    after = shown(client, auth, run_id)
    assert after["mlflow_run_id"] == A and after["progress"] == before["progress"]
    assert after["lease_expires_at"] == before["lease_expires_at"]


def test_a_stale_lease_cannot_set_the_mlflow_run(
    client: FlaskClient, auth: Auth, claimed: dict[str, Any]
) -> None:
    run_id = claimed["run"]["id"]
    stale = beat(client, auth, run_id, lease="not-the-lease", mlflow_run_id=A)
    assert stale.status_code == 409 and stale.get_json()["code"] == "stale_lease"
    assert shown(client, auth, run_id)["mlflow_run_id"] is None


def test_the_next_attempt_reports_its_own_mlflow_run(
    client: FlaskClient, auth: Auth, claimed: dict[str, Any]
) -> None:
    run_id, lease = claimed["run"]["id"], claimed["lease"]
    assert beat(client, auth, run_id, lease=lease, mlflow_run_id=A).status_code == 200
    released = client.post(
        f"/api/v1/runs/{run_id}/release", json={"lease": lease}, headers=auth("worker")
    )
    assert released.status_code == 200
    again = client.post("/api/v1/workers/claim", json={"worker": "w2"}, headers=auth("worker"))
    second = again.get_json()
    assert second["run"]["attempt"] == 2
    # The earlier attempt's id is no report of this attempt: a progress naming it is not either.
    answer = beat(client, auth, run_id, lease=second["lease"], progress={"mlflow_run_id": A})
    assert answer.get_json()["mlflow_run_id"] is None
    answer = beat(client, auth, run_id, lease=second["lease"], mlflow_run_id=B)
    assert answer.status_code == 200 and answer.get_json()["mlflow_run_id"] == B
    assert shown(client, auth, run_id)["mlflow_run_id"] == B
    done = client.post(
        f"/api/v1/runs/{run_id}/complete",
        json={"lease": second["lease"], "status": "succeeded", "mlflow_run_id": B},
        headers=auth("worker"),
    )
    assert done.status_code == 200 and done.get_json()["mlflow_run_id"] == B


@pytest.mark.parametrize("value", ["", "x" * 65, 7, ["a"]])
def test_a_bad_mlflow_run_id_is_422_naming_it(
    client: FlaskClient, auth: Auth, claimed: dict[str, Any], value: Any
) -> None:
    run_id, lease = claimed["run"]["id"], claimed["lease"]
    answer = beat(client, auth, run_id, lease=lease, mlflow_run_id=value)
    assert answer.status_code == 422
    assert "mlflow_run_id" in answer.get_data(as_text=True)
    assert shown(client, auth, run_id)["mlflow_run_id"] is None
