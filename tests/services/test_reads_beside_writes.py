"""A long read transaction does not hold back the writers: claims and heartbeats go through
while it stays open (SQLite: a deferred BEGIN under WAL; PostgreSQL: READ ONLY)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError

from registry.db import is_postgres, make_session_factory, reading, transaction
from registry.models import Run
from registry.services import queue
from tests.support.builders import make_version


def _claim_and_beat(engine: Engine, out: list[Any]) -> None:
    factory = make_session_factory(engine)
    with transaction(factory) as s:
        claimed = queue.claim(s, "w1", ["default"], queue.db_now(s), 60)
        assert claimed is not None
    with transaction(factory) as s:
        run = queue.heartbeat(s, claimed.run.id, claimed.lease, queue.db_now(s), 60)
        out.append((run.status, run.attempt))


def test_a_claim_and_a_heartbeat_pass_a_long_read_transaction(engine: Engine) -> None:
    factory = make_session_factory(engine)
    with transaction(factory) as s:
        queue.enqueue(s, make_version(s, "tiny"), "train")
    done: list[Any] = []
    with reading(factory) as reader:
        # The read transaction is open (it holds a snapshot on SQLite) for the whole block.
        assert reader.scalar(select(func.count()).select_from(Run)) == 1
        writer = threading.Thread(target=_claim_and_beat, args=(engine, done))
        writer.start()
        writer.join(15)  # a writer stuck behind the reader waits the 30 s busy timeout
        assert not writer.is_alive(), "the writer waited for the read transaction"
        assert done == [("running", 1)]
        if not is_postgres(reader):  # SQLite: still inside the snapshot taken before the claim
            assert reader.scalar(select(Run.status)) == "queued"
    with reading(factory) as reader:
        assert reader.scalar(select(Run.status)) == "running"


def test_a_reading_session_cannot_write_on_postgresql(engine: Engine) -> None:
    factory = make_session_factory(engine, reads=True)
    with factory() as s:
        if not is_postgres(s):
            pytest.skip("SQLite has no read-only transactions; reads simply take no lock")
        with pytest.raises(DBAPIError, match="read-only transaction"):
            s.execute(text("UPDATE runs SET priority = 1"))
        s.rollback()
    # The pooled connection is a writer's again afterwards.
    with transaction(make_session_factory(engine)) as s:
        s.execute(text("UPDATE runs SET priority = 1"))
