"""Issue 9, item 9 through the API: 429 with Retry-After naming the limit, 403 naming priority."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine

from registry.db import make_session_factory, transaction
from registry.http import context
from registry.http.app import create_app
from registry.settings import Settings
from tests.support.builders import make_version


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Small quotas, so that a test reaches them."""
    return settings.with_(max_queued_runs=4, runs_per_minute=3, max_priority_submitter=10)


@pytest.fixture(autouse=True)
def _stored(engine: Engine) -> None:
    with transaction(make_session_factory(engine)) as s:
        make_version(s, "tiny", seed=7)


def queue_run(client: FlaskClient, headers: dict[str, str], **body: Any) -> Any:
    return client.post("/api/v1/runs", json={"config": "tiny", **body}, headers=headers)


def test_500_runs_in_a_burst_stop_at_the_rate_limit(client: FlaskClient, auth: Any) -> None:
    answers = [queue_run(client, auth("submitter")) for _ in range(10)]
    assert [a.status_code for a in answers] == [201] * 3 + [429] * 7
    refused = answers[3]
    body = refused.get_json()
    assert (body["code"], body["limit"], body["allowed"]) == (
        "quota_exceeded",
        "runs_per_minute",
        3,
    )
    assert 1 <= int(refused.headers["Retry-After"]) == body["retry_after"] <= 60
    listed = client.get("/api/v1/runs", headers=auth("viewer")).get_json()["runs"]
    assert len(listed) == 3 and {r["created_by"] for r in listed} == {"test-submitter"}


def test_reproduce_counts_against_the_same_quota(client: FlaskClient, auth: Any) -> None:
    run = queue_run(client, auth("submitter")).get_json()
    for _ in range(2):
        copy = client.post(f"/api/v1/runs/{run['id']}/reproduce", headers=auth("submitter"))
        assert copy.status_code == 201
    over = client.post(f"/api/v1/runs/{run['id']}/reproduce", headers=auth("submitter"))
    assert over.status_code == 429 and over.get_json()["limit"] == "runs_per_minute"
    assert "Retry-After" in over.headers


def test_priority_is_capped_by_role(client: FlaskClient, auth: Any) -> None:
    refused = queue_run(client, auth("submitter"), priority=11)
    assert refused.status_code == 403
    assert refused.get_json()["field"] == "priority" and "10" in refused.get_json()["error"]
    assert queue_run(client, auth("submitter"), priority=10).status_code == 201
    assert queue_run(client, auth("admin"), priority=1000).status_code == 201
    too_high = queue_run(client, auth("admin"), priority=1001)
    assert too_high.status_code == 422 and too_high.get_json()["errors"][0]["field"] == "priority"


def test_admins_are_not_counted(client: FlaskClient, auth: Any) -> None:
    assert {queue_run(client, auth("admin")).status_code for _ in range(8)} == {201}


def test_the_waiting_limit_holds_across_server_processes(settings: Settings, auth: Any) -> None:
    """Two apps with engines of their own (what two `registry serve` processes are) share one
    count, because it is read from the runs table."""
    apps = [create_app(settings.with_(runs_per_minute=100)) for _ in range(2)]
    try:
        one, two = (a.test_client() for a in apps)
        for client in (one, two, one, two):
            assert queue_run(client, auth("submitter")).status_code == 201
        for client in (one, two):
            refused = queue_run(client, auth("submitter"))
            assert refused.status_code == 429 and refused.get_json()["limit"] == "max_queued_runs"
            assert refused.headers["Retry-After"] == "60"
    finally:
        for a in apps:
            context.of(a).engine.dispose()
