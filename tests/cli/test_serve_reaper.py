"""A real ``registry serve`` reaps by itself: a run whose lease expired is ``queued`` again
within 10 s with nobody claiming or listing (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import Engine

from registry.db import make_session_factory, transaction
from registry.models import Run
from registry.settings import Settings
from tests.support.builders import make_version
from tests.support.procs import start_server, wait_for

LEASE_S = 2


def _status(engine: Engine, run_id: int) -> tuple[str, int]:
    """Read straight from the database: no request reaches the service meanwhile."""
    with make_session_factory(engine)() as s:
        run = s.get(Run, run_id)
        assert run is not None
        return run.status, run.attempt


@pytest.mark.slow
def test_serve_requeues_an_expired_lease_with_nobody_claiming_or_listing(
    settings: Settings, engine: Engine, tokens: dict[str, str], tmp_path: Path
) -> None:
    with transaction(make_session_factory(engine)) as s:
        make_version(s, "tiny")
    env = {
        "DATABASE_URL": settings.database_url,
        "REGISTRY_LEASE_SECONDS": str(LEASE_S),
        "REGISTRY_REAP_INTERVAL": "1",
    }
    server = start_server(env, tmp_path / "server.log", workers=2)
    made = server.post("/runs", tokens["submitter"], {"config": "tiny"})
    assert made.status_code == 201, made.text
    run_id = made.json()["id"]
    job = server.post("/workers/claim", tokens["worker"], {"worker": "lost-1"})
    assert job.status_code == 200 and job.json()["run"]["id"] == run_id
    claimed_at = time.monotonic()
    assert _status(engine, run_id) == ("running", 1)
    wait_for(lambda: _status(engine, run_id)[0] != "running", LEASE_S + 10, "the reaper")
    took = time.monotonic() - claimed_at
    assert _status(engine, run_id) == ("queued", 2), server.proc.output()
    assert took < LEASE_S + 10
    print(f"requeued {took - LEASE_S:.1f}s after the lease expired")
    one = server.get(f"/runs/{run_id}", tokens["viewer"]).json()
    assert (one["status"], one["attempt"]) == ("queued", 2)
    stale = server.post(
        f"/runs/{run_id}/heartbeat", tokens["worker"], {"lease": job.json()["lease"]}
    )
    assert stale.status_code == 409
    server.proc.stop()
