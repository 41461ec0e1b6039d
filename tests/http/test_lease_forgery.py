"""Issue 9, item 4: a worker token cannot report a run it did not claim (both backends).

The attack as it was made: a second worker token sends ``POST /runs/<id>/complete`` with
``{"lease": 1}`` (the attempt number was the lease) and forged metrics, and they were stored.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine
from werkzeug.test import TestResponse

from registry.db import make_session_factory, transaction
from registry.services.auth import create_token
from tests.support.builders import make_version

FORGED = {"status": "succeeded", "metrics": {"val_loss": 0.0001}, "mlflow_run_id": "forged"}


@pytest.fixture
def intruder(engine: Engine) -> dict[str, str]:
    """The headers of a second, unrelated worker token."""
    with transaction(make_session_factory(engine)) as s:
        make_version(s, "tiny", seed=7)
        secret = create_token(s, "other-worker", "worker")
    return {"Authorization": f"Bearer {secret}"}


def api(
    client: FlaskClient, method: str, path: str, headers: dict[str, str], body: Any = None
) -> TestResponse:
    return client.open(f"/api/v1{path}", method=method, json=body, headers=headers)


def queue_and_claim(client: FlaskClient, auth: Any, worker: str = "w1") -> tuple[int, str]:
    run = api(client, "POST", "/runs", auth("submitter"), {"config": "tiny", "force": True})
    assert run.status_code == 201, run.get_json()
    claimed = api(client, "POST", "/workers/claim", auth("worker"), {"worker": worker})
    assert claimed.status_code == 200
    body = claimed.get_json()
    assert body["run"]["id"] == run.get_json()["id"]
    return body["run"]["id"], body["lease"]


def test_a_guessed_lease_from_another_worker_token_is_refused_and_stores_nothing(
    client: FlaskClient, auth: Any, intruder: dict[str, str]
) -> None:
    run_id, lease = queue_and_claim(client, auth)
    other_id, other_lease = queue_and_claim(client, auth, worker="w2")
    before = api(client, "GET", f"/runs/{run_id}", auth("viewer")).get_json()
    guesses: list[Any] = [1, 2, "1", 0, -1, other_lease, lease + "A", lease.lower(), " " + lease]
    for headers in (intruder, auth("worker")):
        for guess in guesses:
            for path, body in (
                ("complete", {"lease": guess, **FORGED}),
                ("heartbeat", {"lease": guess, "progress": {"step": 10**6}}),
                ("release", {"lease": guess}),
            ):
                answer = api(client, "POST", f"/runs/{run_id}/{path}", headers, body)
                assert answer.status_code == 409, (path, guess, answer.get_json())
                assert answer.get_json()["code"] == "stale_lease"
                assert lease not in answer.get_data(as_text=True)
    assert api(client, "GET", f"/runs/{run_id}", auth("viewer")).get_json() == before
    done = api(
        client,
        "POST",
        f"/runs/{run_id}/complete",
        auth("worker"),
        {"lease": lease, "status": "succeeded", "metrics": {"val_loss": 2.5}},
    )
    assert done.status_code == 200 and done.get_json()["metrics"] == {"val_loss": 2.5}
    assert api(client, "GET", f"/runs/{other_id}", auth("viewer")).get_json()["status"] == (
        "running"
    )


def test_an_old_lease_is_refused_after_the_run_is_claimed_again(
    client: FlaskClient, auth: Any, intruder: dict[str, str]
) -> None:
    run_id, old = queue_and_claim(client, auth)
    released = api(client, "POST", f"/runs/{run_id}/release", auth("worker"), {"lease": old})
    assert released.status_code == 200
    again = api(client, "POST", "/workers/claim", auth("worker"), {"worker": "w2"}).get_json()
    assert (again["run"]["id"], again["run"]["attempt"]) == (run_id, 2)
    assert again["lease"] != old
    claimed = api(client, "GET", f"/runs/{run_id}", auth("viewer")).get_json()
    for headers in (intruder, auth("worker")):
        forged = api(client, "POST", f"/runs/{run_id}/complete", headers, {"lease": old, **FORGED})
        assert forged.status_code == 409
        beat = api(client, "POST", f"/runs/{run_id}/heartbeat", headers, {"lease": old})
        assert beat.status_code == 409
    assert api(client, "GET", f"/runs/{run_id}", auth("viewer")).get_json() == claimed


@pytest.mark.parametrize(
    ("lease", "field"),
    [({"a": 1}, "lease"), (1.5, "lease"), (True, "lease"), ("x" * 201, "lease"), (None, "lease")],
)
def test_a_lease_of_the_wrong_shape_is_a_422_naming_it(
    client: FlaskClient, auth: Any, intruder: dict[str, str], lease: Any, field: str
) -> None:
    run_id, _ = queue_and_claim(client, auth)
    answer = api(client, "POST", f"/runs/{run_id}/heartbeat", intruder, {"lease": lease})
    assert answer.status_code == 422
    assert {e["field"].split(".")[0] for e in answer.get_json()["errors"]} == {field}
