"""Leases are opaque fencing tokens: only the claim's own lease reports on its run (both DBs)."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import Any

import pytest
from sqlalchemy.orm import Session

from registry.errors import StaleLease
from registry.models import ConfigVersion, Run
from registry.services import leases, queue
from tests.support.builders import make_version

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
LEASE = 60


@pytest.fixture
def version(session: Session) -> ConfigVersion:
    return make_version(session)


def take(session: Session, worker: str, now: dt.datetime = T0) -> queue.Claim:
    claimed = queue.claim(session, worker, ["default"], now, LEASE)
    assert claimed is not None
    return claimed


def snapshot(session: Session, run_id: int) -> dict[str, object]:
    session.expire_all()
    run = session.get(Run, run_id)
    assert run is not None
    return {c.key: getattr(run, c.key) for c in Run.__table__.columns}


def test_each_claim_answers_a_new_unguessable_lease_and_stores_only_its_digest(
    session: Session, version: ConfigVersion
) -> None:
    first = queue.enqueue(session, version, "train")
    second = queue.enqueue(session, version, "train")
    a, b = take(session, "w1"), take(session, "w2")
    for claimed in (a, b):
        assert re.fullmatch(r"[A-Za-z0-9_-]{43,}", claimed.lease)
        state = snapshot(session, claimed.run.id)
        assert state["lease_hash"] == hashlib.sha256(claimed.lease.encode()).hexdigest()
        assert claimed.lease not in {str(v) for v in state.values()}
    assert a.lease != b.lease and {a.run.id, b.run.id} == {first.id, second.id}
    queue.release(session, a.run.id, a.lease, T0)
    again = take(session, "w3")
    assert again.run.id == a.run.id and again.lease not in (a.lease, b.lease)


def _forgeries(claimed: queue.Claim, other: queue.Claim, old: str) -> list[Any]:
    """What another worker can send instead of the lease: guesses, neighbours and leftovers."""
    attempt = claimed.run.attempt
    return [
        str(attempt),
        str(attempt + 1),
        "1",
        "",
        old,
        other.lease,
        claimed.lease + "x",
        claimed.lease[:-1],
        hashlib.sha256(claimed.lease.encode()).hexdigest(),  # the stored digest itself
        attempt,  # an int: not even a string
    ]


def test_no_report_but_the_current_lease_changes_the_run(
    session: Session, version: ConfigVersion
) -> None:
    run = queue.enqueue(session, version, "train")
    queue.enqueue(session, version, "train")
    old = take(session, "w1").lease
    queue.reap(session, T0 + dt.timedelta(seconds=LEASE + 1))  # attempt 1 lost
    claimed = take(session, "w1", T0 + dt.timedelta(seconds=LEASE + 2))
    other = take(session, "w2", T0 + dt.timedelta(seconds=LEASE + 2))
    assert claimed.run.id == run.id and claimed.run.attempt == 2
    now = T0 + dt.timedelta(seconds=LEASE + 3)
    before = snapshot(session, run.id)
    for forged in _forgeries(claimed, other, old):
        with pytest.raises(StaleLease):
            queue.heartbeat(session, run.id, forged, now, LEASE, progress={"step": 999})
        with pytest.raises(StaleLease):
            queue.complete(
                session, run.id, forged, "succeeded", {"val_loss": 1e-4}, "x", {}, None, now
            )
        with pytest.raises(StaleLease):
            queue.release(session, run.id, forged, now)
        assert snapshot(session, run.id) == before, forged
    done = queue.complete(
        session, run.id, claimed.lease, "succeeded", {"val_loss": 2.5}, "m", {}, None, now
    )
    assert (done.status, done.metrics) == ("succeeded", {"val_loss": 2.5})


def test_a_finished_run_answers_its_resend_only_under_its_own_lease(
    session: Session, version: ConfigVersion
) -> None:
    run = queue.enqueue(session, version, "train")
    claimed = take(session, "w1")
    report = ("succeeded", {"val_loss": 2.0}, "m1", {"seed": 7}, None, T0)
    queue.complete(session, run.id, claimed.lease, *report)
    assert queue.complete(session, run.id, claimed.lease, *report).status == "succeeded"
    for forged in ("1", str(run.id), claimed.lease.upper(), "lease"):
        with pytest.raises(StaleLease):
            queue.complete(session, run.id, forged, *report)


def test_leases_match_by_digest_in_constant_time() -> None:
    lease, digest = leases.new_lease()
    assert leases.matches(lease, digest)
    assert not leases.matches(lease, None)
    assert not leases.matches(1, digest)
    assert not leases.matches(None, digest)
    assert not leases.matches(digest, digest)
    assert leases.new_lease()[0] != lease
