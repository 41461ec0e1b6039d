"""GET handlers write nothing: an expired lease stays as it is until the reaper takes it, and
every route and page shows the same status meanwhile (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import Engine, event

from registry.db import make_session_factory, transaction
from registry.http.app import create_app
from registry.services.reaper import reap_once
from registry.settings import Settings
from tests.support.builders import make_version
from tests.support.web import sign_in

Auth = Callable[..., dict[str, str]]
WRITES = ("insert", "update", "delete")


@contextmanager
def writes(engine: Engine) -> Iterator[list[str]]:
    """Every INSERT/UPDATE/DELETE statement sent while inside (to any table)."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        text = statement.lstrip().lower()
        if text.startswith(WRITES):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _statuses(client: FlaskClient, auth: Auth, run_id: int) -> set[tuple[str, int]]:
    listed = client.get("/api/v1/runs", headers=auth("viewer")).get_json()["runs"]
    one = client.get(f"/api/v1/runs/{run_id}", headers=auth("viewer")).get_json()
    return {(r["status"], r["attempt"]) for r in [*listed, one]}


def test_gets_leave_an_expired_lease_to_the_reaper_and_agree_on_its_status(
    settings: Settings, engine: Engine, auth: Auth, tokens: dict[str, str]
) -> None:
    with transaction(make_session_factory(engine)) as s:
        make_version(s, "tiny")
    app = create_app(settings.with_(lease_seconds=0, secure_cookies=False), engine=engine)
    client = app.test_client()
    made = client.post("/api/v1/runs", json={"config": "tiny"}, headers=auth("submitter"))
    run_id = made.get_json()["id"]
    claimed = client.post("/api/v1/workers/claim", json={"worker": "w1"}, headers=auth("worker"))
    lease = claimed.get_json()["lease"]
    pages = app.test_client()
    sign_in(pages, tokens["viewer"])
    with writes(engine) as sent:
        assert _statuses(client, auth, run_id) == {("running", 1)}  # expired, not yet reaped
        assert client.get("/api/v1/workers", headers=auth("viewer")).status_code == 200
        for path in ("/runs", f"/runs/{run_id}"):
            page = pages.get(path)
            assert page.status_code == 200 and "running" in page.get_data(as_text=True)
    assert sent == []
    assert reap_once(make_session_factory(engine)) == [run_id]
    assert _statuses(client, auth, run_id) == {("queued", 2)}
    assert "queued" in pages.get(f"/runs/{run_id}").get_data(as_text=True)
    stale = client.post(
        f"/api/v1/runs/{run_id}/heartbeat", json={"lease": lease}, headers=auth("worker")
    )
    assert stale.status_code == 409


def test_an_expired_but_unreaped_lease_is_still_current_for_heartbeats(
    settings: Settings, engine: Engine, auth: Auth
) -> None:
    """The one fencing rule over HTTP: the reap, not the clock, ends a lease."""
    with transaction(make_session_factory(engine)) as s:
        make_version(s, "tiny")
    client = create_app(settings.with_(lease_seconds=0), engine=engine).test_client()
    client.post("/api/v1/runs", json={"config": "tiny"}, headers=auth("submitter"))
    job = client.post("/api/v1/workers/claim", json={"worker": "w1"}, headers=auth("worker"))
    run_id, lease = job.get_json()["run"]["id"], job.get_json()["lease"]
    beat = client.post(
        f"/api/v1/runs/{run_id}/heartbeat", json={"lease": lease}, headers=auth("worker")
    )
    assert beat.status_code == 200, beat.get_json()
