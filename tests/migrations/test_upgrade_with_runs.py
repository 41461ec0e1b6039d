"""Upgrading the schema with runs in the queue (docs/deploy.md, "Upgrading"): a database at
the previous head holding queued, running and finished runs is migrated to head; every row
survives as it was, the running run's worker delivers with the lease it holds, the queued run
is claimed, and a worker token made before the upgrade still works."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, MetaData, Table, create_engine, insert, select

from registry.db import make_session_factory
from registry.document.spec import config_hash
from registry.http.app import create_app
from registry.migrations import alembic_config
from registry.models import Config, ConfigVersion, Run, Token
from registry.services import leases
from registry.services.auth import hash_token
from registry.settings import Settings
from tests.support.dbs import database, migrate
from tests.support.worker import tiny_doc

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
LEASE = "lease-held-by-a-worker-across-the-upgrade"
WORKER_TOKEN = "cr_worker-token-made-before-the-upgrade"


def previous_head() -> str:
    """The revision before head: what a deployment runs until it upgrades."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    down = script.get_revision(script.get_current_head()).down_revision
    assert isinstance(down, str)
    return down


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def old_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A database at the previous head; its engine."""
    with database(request.param, tmp_path) as url:
        migrate(url, previous_head())
        engine = create_engine(url)
        yield engine
        engine.dispose()


def run_row(run_id: int, status: str, **fields: Any) -> dict[str, Any]:
    base = {
        "id": run_id,
        "config_version_id": 1,
        "kind": "train",
        "status": status,
        "queue": "default",
        "priority": 0,
        "attempt": 1,
        "seed": 2**32 - 1,  # the widest seed 0005 allows
        "cancel_requested": False,
        "created_at": NOW - dt.timedelta(minutes=10),
        "provenance_complete": False,
        "reproduced": False,
    }
    return {**base, **fields}


def fill(engine: Engine) -> None:
    """What a live deployment holds: a queued run, a running one mid-lease, a succeeded one."""
    doc = tiny_doc()
    with engine.begin() as conn:
        conn.execute(insert(Config).values(id=1, name="tiny", created_at=NOW))
        conn.execute(
            insert(ConfigVersion).values(
                id=1, config_id=1, version=1, hash=config_hash(doc), document=doc, created_at=NOW
            )
        )
        conn.execute(
            insert(Token).values(
                name="gpu-1", role="worker", token_hash=hash_token(WORKER_TOKEN), created_at=NOW
            )
        )
        rows = [
            run_row(1, "queued", priority=5),
            run_row(
                2,
                "running",
                attempt=2,
                worker_id="gpu-1-0",
                lease_hash=leases.digest(LEASE),
                lease_expires_at=NOW + dt.timedelta(hours=1),
                started_at=NOW - dt.timedelta(minutes=5),
                progress={"phase": "train", "step": 120},
            ),
            run_row(
                3,
                "succeeded",
                metrics={"train_loss": 1.25},
                mlflow_run_id="abc",
                finished_at=NOW - dt.timedelta(minutes=1),
            ),
        ]
        for row in rows:  # one by one: an executemany takes the first row's keys for all
            conn.execute(insert(Run).values(**row))


def runs(engine: Engine, columns: set[str] | None = None) -> list[dict[str, Any]]:
    """The runs as stored, with only ``columns`` (default: those the database has now)."""
    table = Table("runs", MetaData(), autoload_with=engine)
    keep = [c for c in table.c if columns is None or c.name in columns]
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(*keep).order_by(table.c.id))]


def test_upgrade_keeps_queued_and_running_runs_working(old_db: Engine, tmp_path: Path) -> None:
    fill(old_db)
    before = runs(old_db)
    migrate(old_db.url.render_as_string(hide_password=False), "head")
    assert runs(old_db, set(before[0])) == before
    # 0007: every run queued before it fails on out of memory, as it always did.
    assert {(r["on_oom"], r["remedied_by"]) for r in runs(old_db)} == {("fail", None)}

    settings = Settings(
        database_url=old_db.url.render_as_string(hide_password=False),
        secret_key="test-only-session-key-never-used-outside-tests",
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    app = create_app(settings, engine=old_db)
    app.config["TESTING"] = True
    client = app.test_client()
    auth = {"Authorization": f"Bearer {WORKER_TOKEN}"}

    beat = client.post("/api/v1/runs/2/heartbeat", json={"lease": LEASE}, headers=auth)
    assert beat.status_code == 200, beat.get_json()
    body = {"lease": LEASE, "status": "succeeded", "metrics": {"train_loss": 0.5}}
    done = client.post("/api/v1/runs/2/complete", json=body, headers=auth)
    assert done.status_code == 200, done.get_json()

    claimed = client.post("/api/v1/workers/claim", json={"worker": "gpu-2-0"}, headers=auth)
    assert claimed.status_code == 200, claimed.get_json()
    assert claimed.get_json()["run"]["id"] == 1

    factory = make_session_factory(old_db)
    with factory() as s:
        by_id = {r.id: r for r in s.scalars(select(Run))}
        assert (by_id[1].status, by_id[1].worker_id, by_id[1].seed) == (
            "running",
            "gpu-2-0",
            2**32 - 1,
        )
        assert (by_id[2].status, by_id[2].attempt, by_id[2].metrics) == (
            "succeeded",
            2,
            {"train_loss": 0.5},
        )
        assert (by_id[3].status, by_id[3].metrics) == ("succeeded", {"train_loss": 1.25})
