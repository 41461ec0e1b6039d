"""The run and worker routes through the Flask test client, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine

from registry.db import make_session_factory, transaction
from tests.support.builders import make_version

Auth = Callable[..., dict[str, str]]


@pytest.fixture
def versions(engine: Engine) -> None:
    """Two stored configs, ``tiny`` (seed 7) and ``other``."""
    with transaction(make_session_factory(engine)) as s:
        make_version(s, "tiny", seed=7)
        make_version(s, "other", seed=1)


def post(client: FlaskClient, path: str, auth: dict[str, str], body: Any) -> Any:
    return client.post(f"/api/v1{path}", json=body, headers=auth)


def queue_run(client: FlaskClient, auth: Auth, **body: Any) -> dict[str, Any]:
    response = post(client, "/runs", auth("submitter"), {"config": "tiny", **body})
    assert response.status_code == 201, response.get_json()
    return response.get_json()  # type: ignore[no-any-return]


def claim(client: FlaskClient, auth: Auth, worker: str = "w1", **body: Any) -> Any:
    return post(client, "/workers/claim", auth("worker"), {"worker": worker, **body})


def test_create_run_shows_the_contract_fields(
    client: FlaskClient, auth: Auth, versions: None
) -> None:
    run = queue_run(client, auth)
    for key in (
        "id",
        "config",
        "version",
        "config_hash",
        "kind",
        "status",
        "queue",
        "attempt",
        "worker",
        "metrics",
        "mlflow_run_id",
        "provenance",
        "created_at",
        "started_at",
        "finished_at",
        "error",
        "reproduces",
        "from_run",
        "seed",
        "progress",
    ):
        assert key in run
    assert (run["config"], run["version"], run["kind"], run["status"], run["seed"]) == (
        "tiny",
        1,
        "train",
        "queued",
        7,
    )
    assert run["created_at"].endswith("+00:00")
    got = client.get(f"/api/v1/runs/{run['id']}", headers=auth("viewer"))
    assert got.status_code == 200 and got.get_json() == run


def test_create_run_errors(client: FlaskClient, auth: Auth, versions: None) -> None:
    assert post(client, "/runs", {}, {"config": "tiny"}).status_code == 401
    assert post(client, "/runs", auth("viewer"), {"config": "tiny"}).status_code == 403
    assert post(client, "/runs", auth("worker"), {"config": "tiny"}).status_code == 403
    assert post(client, "/runs", auth(), {"config": "nope"}).status_code == 404
    bad = post(client, "/runs", auth(), {"config": "tiny", "kind": "dance"})
    assert bad.status_code == 422 and bad.get_json()["errors"][0]["field"] == "kind"
    evaluate = post(client, "/runs", auth(), {"config": "tiny", "kind": "evaluate"})
    assert evaluate.status_code == 400 and "from_run" in evaluate.get_json()["error"]
    malformed = client.post(
        "/api/v1/runs", data="{", content_type="application/json", headers=auth()
    )
    assert malformed.status_code == 400
    assert client.get("/api/v1/runs/999", headers=auth()).status_code == 404


def test_list_runs_filters_and_orders(client: FlaskClient, auth: Auth, versions: None) -> None:
    a = queue_run(client, auth)
    b = queue_run(client, auth, config="other", queue="gpu")
    c = queue_run(client, auth)

    def ids(query: str = "") -> list[int]:
        response = client.get(f"/api/v1/runs{query}", headers=auth("viewer"))
        assert response.status_code == 200, response.get_json()
        return [r["id"] for r in response.get_json()["runs"]]

    assert ids() == [c["id"], b["id"], a["id"]]
    assert ids("?order_by=id ASC&limit=2") == [a["id"], b["id"]]
    assert ids("?config=other") == [b["id"]]
    assert ids("?filter=queue = 'gpu' AND kind = \"train\"") == [b["id"]]
    assert ids("?filter=status = 'running'") == []
    bad = client.get("/api/v1/runs?filter=status ~ 'x'", headers=auth())
    assert bad.status_code == 400 and bad.get_json()["position"] == 7
    assert bad.get_json()["expected"]
    assert client.get("/api/v1/runs?limit=0", headers=auth()).status_code == 400
    assert client.get("/api/v1/runs?order_by=nonsense", headers=auth()).status_code == 400


def test_claim_heartbeat_complete(client: FlaskClient, auth: Auth, versions: None) -> None:
    assert claim(client, auth).status_code == 204
    run = queue_run(client, auth, priority=3)
    assert claim(client, auth, queues=["gpu"]).status_code == 204
    assert post(client, "/workers/claim", auth("submitter"), {"worker": "w"}).status_code == 403
    answer = claim(client, auth).get_json()
    lease = answer["lease"]
    assert isinstance(lease, str) and len(lease) >= 43 and answer["run"]["id"] == run["id"]
    assert answer["run"]["status"] == "running" and answer["run"]["worker"] == "w1"
    assert answer["run"]["attempt"] == 1
    assert answer["config"] == {"training": {"seed": 7}} and answer["from_run"] is None
    beat = post(
        client,
        f"/runs/{run['id']}/heartbeat",
        auth("worker"),
        {"lease": lease, "progress": {"step": 2, "of": 10}},
    )
    assert beat.status_code == 200, beat.get_json()
    assert beat.get_json()["attempt"] == 1 and lease not in beat.get_data(as_text=True)
    shown = client.get(f"/api/v1/runs/{run['id']}", headers=auth()).get_json()
    assert shown["progress"] == {"step": 2, "of": 10}
    report = {
        "lease": lease,
        "status": "succeeded",
        "metrics": {"train_loss": 1.5},
        "mlflow_run_id": "abc",
        "provenance": {"seed": 7},
    }
    first = post(client, f"/runs/{run['id']}/complete", auth("worker"), report)
    second = post(client, f"/runs/{run['id']}/complete", auth("worker"), report)
    assert first.status_code == second.status_code == 200
    assert first.get_json() == second.get_json()
    assert first.get_json()["status"] == "succeeded"
    changed = post(
        client,
        f"/runs/{run['id']}/complete",
        auth("worker"),
        {**report, "metrics": {"train_loss": 0.1}},
    )
    assert changed.status_code == 409 and changed.get_json()["code"] == "stale_lease"
    assert client.get(f"/api/v1/runs/{run['id']}", headers=auth()).get_json() == first.get_json()


def test_evaluate_claim_carries_its_trained_run(
    client: FlaskClient, auth: Auth, versions: None
) -> None:
    train = queue_run(client, auth)
    lease = claim(client, auth).get_json()["lease"]
    post(
        client,
        f"/runs/{train['id']}/complete",
        auth("worker"),
        {"lease": lease, "status": "succeeded", "metrics": {}, "mlflow_run_id": "m-train"},
    )
    evaluate = queue_run(client, auth, kind="evaluate", from_run=train["id"])
    answer = claim(client, auth).get_json()
    assert answer["run"]["id"] == evaluate["id"]
    assert answer["from_run"]["mlflow_run_id"] == "m-train"


def test_cancel_running_run_stops_at_heartbeat(
    client: FlaskClient, auth: Auth, versions: None
) -> None:
    run = queue_run(client, auth)
    lease = claim(client, auth).get_json()["lease"]
    cancelled = post(client, f"/runs/{run['id']}/cancel", auth("submitter"), None)
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "running"
    beat = post(client, f"/runs/{run['id']}/heartbeat", auth("worker"), {"lease": lease})
    assert beat.status_code == 409 and beat.get_json()["cancel_requested"] is True
    done = post(
        client,
        f"/runs/{run['id']}/complete",
        auth("worker"),
        {"lease": lease, "status": "failed", "metrics": {}, "error": {"kind": "stopped"}},
    )
    assert done.status_code == 200 and done.get_json()["status"] == "cancelled"
    again = post(client, f"/runs/{run['id']}/cancel", auth("submitter"), None)
    assert again.status_code == 200
    queued = queue_run(client, auth)
    gone = post(client, f"/runs/{queued['id']}/cancel", auth("submitter"), None)
    assert gone.get_json()["status"] == "cancelled"


def test_release_requeues_and_fences(client: FlaskClient, auth: Auth, versions: None) -> None:
    run = queue_run(client, auth)
    lease = claim(client, auth).get_json()["lease"]
    released = post(client, f"/runs/{run['id']}/release", auth("worker"), {"lease": lease})
    assert released.status_code == 200
    assert (released.get_json()["status"], released.get_json()["attempt"]) == ("queued", 2)
    again_release = post(client, f"/runs/{run['id']}/release", auth("worker"), {"lease": lease})
    assert again_release.status_code == 409
    again = claim(client, auth, worker="w2").get_json()
    assert (again["run"]["id"], again["run"]["attempt"]) == (run["id"], 2)
    assert again["lease"] != lease
    stale = post(client, f"/runs/{run['id']}/heartbeat", auth("worker"), {"lease": lease})
    assert stale.status_code == 409


def test_reproduce(client: FlaskClient, auth: Auth, versions: None) -> None:
    run = queue_run(client, auth, seed=99)
    copy = post(client, f"/runs/{run['id']}/reproduce", auth("submitter"), None)
    assert copy.status_code == 201
    body = copy.get_json()
    assert (body["reproduces"], body["seed"], body["version"]) == (run["id"], 99, 1)
    assert post(client, "/runs/4242/reproduce", auth(), None).status_code == 404


def test_workers_register_and_list(client: FlaskClient, auth: Auth, versions: None) -> None:
    body = {"worker": "gpu-1", "host": "h", "devices": {"kind": "cpu"}, "queues": ["default"]}
    assert post(client, "/workers/register", auth("worker"), body).status_code == 200
    assert post(client, "/workers/register", auth("viewer"), body).status_code == 403
    run = queue_run(client, auth)
    claim(client, auth, worker="gpu-1")
    workers = client.get("/api/v1/workers", headers=auth("viewer")).get_json()["workers"]
    assert [(w["id"], w["current_run"], w["queues"]) for w in workers] == [
        ("gpu-1", run["id"], ["default"])
    ]


def test_list_runs_pages_with_a_cursor(client: FlaskClient, auth: Auth, versions: None) -> None:
    made = [queue_run(client, auth)["id"] for _ in range(5)]
    seen: list[int] = []
    cursor = ""
    for _ in range(5):
        page = client.get(f"/api/v1/runs?order_by=id ASC&limit=2{cursor}", headers=auth("viewer"))
        body = page.get_json()
        seen += [r["id"] for r in body["runs"]]
        if body["next_cursor"] is None:
            break
        cursor = f"&cursor={body['next_cursor']}"
    assert seen == made


def test_the_full_filter_language_reaches_the_api(
    client: FlaskClient, auth: Auth, versions: None
) -> None:
    a = queue_run(client, auth)
    b = queue_run(client, auth, config="other", queue="gpu")
    expr = f"(queue = 'gpu' OR id IN ({a['id']})) AND NOT status = 'failed'"
    listed = client.get("/api/v1/runs", query_string={"filter": expr}, headers=auth("viewer"))
    assert sorted(r["id"] for r in listed.get_json()["runs"]) == sorted([a["id"], b["id"]])


def test_equality_arguments_are_values_never_filter_text(
    client: FlaskClient, auth: Auth, versions: None
) -> None:
    """Issue 9, item 11: ``?status=`` and friends once were spliced into the filter text with
    quotes doubled but backslashes kept, so a value could close its string and add clauses."""
    a = queue_run(client, auth)
    b = queue_run(client, auth, config="other", queue="gpu")

    def ids(query: dict[str, Any] | list[tuple[str, str]]) -> list[int]:
        answer = client.get("/api/v1/runs", query_string=query, headers=auth("viewer"))
        assert answer.status_code == 200, answer.get_json()
        return sorted(r["id"] for r in answer.get_json()["runs"])

    attack = [("status", "\\"), ("config", " OR id>0 OR config= ")]
    assert ids(attack) == []
    assert ids({"status": "\\' OR id > 0 OR status = '"}) == []
    assert ids({"config": "o'ther"}) == [] and ids({"queue": 'gpu" OR "1" = "1'}) == []
    assert ids({"config": "other"}) == [b["id"]]
    assert ids([("config", "tiny"), ("config", "other")]) == sorted([a["id"], b["id"]])
    assert ids({"queue": "gpu", "filter": "kind = 'train'"}) == [b["id"]]
    assert ids({"config": "tiny", "filter": "queue = 'gpu' OR kind = 'train'"}) == [a["id"]]
    bad = client.get("/api/v1/runs?status=queued&filter=status ~ 1", headers=auth())
    assert bad.status_code == 400 and bad.get_json()["position"] == 7


def test_a_seed_override_takes_what_the_document_allows(
    client: FlaskClient, auth: Auth, versions: None
) -> None:
    assert queue_run(client, auth, seed=2**32 - 1)["seed"] == 2**32 - 1
    for bad in (2**32, -1):
        answer = post(client, "/runs", auth("submitter"), {"config": "tiny", "seed": bad})
        assert answer.status_code == 422, answer.get_json()
        assert answer.get_json()["errors"][0]["field"] == "seed"
