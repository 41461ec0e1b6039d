"""Issue 9, item 9: run quotas per caller, counted in the database (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from registry.db import make_session_factory, transaction
from registry.errors import Forbidden
from registry.models import ConfigVersion
from registry.services import admission, queue
from registry.services.admission import Quota, QuotaExceeded
from registry.settings import Settings
from tests.support.builders import make_version

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


@pytest.fixture
def version(session: Session) -> ConfigVersion:
    return make_version(session)


def test_roles_get_their_quota_from_the_settings() -> None:
    settings = Settings(max_queued_runs=7, runs_per_minute=5, max_priority_submitter=3)
    assert admission.quota_for(settings, "ann", "submitter") == Quota("ann", 3, 7, 5)
    assert admission.quota_for(settings, "root", "admin") == Quota("root", 1000, None, None)
    env = {
        "REGISTRY_MAX_QUEUED_RUNS": "12",
        "REGISTRY_RUNS_PER_MINUTE": "4",
        "REGISTRY_MAX_PRIORITY_SUBMITTER": "0",
    }
    read = Settings.from_env(env, env_file=None)
    assert (read.max_queued_runs, read.runs_per_minute, read.max_priority_submitter) == (12, 4, 0)
    with pytest.raises(ValueError, match="REGISTRY_RUNS_PER_MINUTE"):
        Settings.from_env({"REGISTRY_RUNS_PER_MINUTE": "lots"}, env_file=None)


def test_priority_above_the_roles_cap_is_forbidden_naming_priority(
    session: Session, version: ConfigVersion
) -> None:
    quota = Quota("ann", max_priority=10)
    assert queue.enqueue(session, version, "train", priority=10, quota=quota, now=T0)
    with pytest.raises(Forbidden) as refused:
        queue.enqueue(session, version, "train", priority=11, quota=quota, now=T0)
    assert refused.value.extra["field"] == "priority" and refused.value.extra["allowed"] == 10
    assert queue.enqueue(session, version, "train", priority=1000, quota=Quota("root"), now=T0)


def test_runs_waiting_are_limited_per_caller_until_some_finish(
    session: Session, version: ConfigVersion
) -> None:
    ann = Quota("ann", max_waiting=3)
    runs = [queue.enqueue(session, version, "train", quota=ann, now=at(i)) for i in range(3)]
    assert {r.created_by for r in runs} == {"ann"}
    with pytest.raises(QuotaExceeded) as refused:
        queue.enqueue(session, version, "train", quota=ann, now=at(5))
    body = refused.value.to_dict()
    assert (refused.value.status, body["code"], body["limit"], body["allowed"]) == (
        429,
        "quota_exceeded",
        "max_queued_runs",
        3,
    )
    assert refused.value.retry_after >= 1 and "max_queued_runs" in body["error"]
    assert queue.enqueue(session, version, "train", quota=Quota("bob", max_waiting=3), now=at(5))
    claimed = queue.claim(session, "w", ["default"], at(6), 60)  # running still counts
    assert claimed is not None and claimed.run.created_by == "ann"
    with pytest.raises(QuotaExceeded):
        queue.enqueue(session, version, "train", quota=ann, now=at(7))
    queue.complete(session, claimed.run.id, claimed.lease, "failed", {}, None, None, None, at(8))
    assert queue.enqueue(session, version, "train", quota=ann, now=at(9)).created_by == "ann"


def test_runs_per_minute_are_limited_and_retry_after_says_when_a_slot_opens(
    session: Session, version: ConfigVersion
) -> None:
    ann = Quota("ann", per_minute=3)
    for second in (0, 10, 20):
        run = queue.enqueue(session, version, "train", quota=ann, now=at(second))
        queue.cancel(session, run.id, at(second))  # cancelling does not give the slot back
    with pytest.raises(QuotaExceeded) as refused:
        queue.enqueue(session, version, "train", quota=ann, now=at(30))
    assert refused.value.extra["limit"] == "runs_per_minute"
    assert refused.value.retry_after == 30  # the run of second 0 leaves the window at 60
    assert queue.enqueue(session, version, "train", quota=ann, now=at(60))
    with pytest.raises(QuotaExceeded) as again:
        queue.enqueue(session, version, "train", quota=ann, now=at(61))
    assert again.value.retry_after == 9  # now the run of second 10 is the oldest counted
    assert queue.enqueue(session, version, "train", quota=Quota("bob", per_minute=3), now=at(61))


def test_reproduce_counts_and_caps_the_copied_priority(
    session: Session, version: ConfigVersion
) -> None:
    urgent = queue.enqueue(session, version, "train", priority=900, quota=Quota("root"), now=T0)
    ann = Quota("ann", max_priority=10, max_waiting=1)
    copy = queue.reproduce(session, urgent.id, quota=ann)
    assert (copy.priority, copy.created_by, copy.reproduces) == (10, "ann", urgent.id)
    with pytest.raises(QuotaExceeded):
        queue.reproduce(session, urgent.id, quota=ann)


def test_concurrent_requests_of_one_caller_never_exceed_its_quota(engine: Engine) -> None:
    """Eight threads with their own connections queue for one caller at once: the count and
    the insert of one admission are not interleaved with another's."""
    factory = make_session_factory(engine)
    with transaction(factory) as s:
        version_id = make_version(s).id
    quota = Quota("ann", max_waiting=5)
    admitted: list[int] = []
    refused: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def submit() -> None:
        start.wait()
        for _ in range(3):
            try:
                with transaction(factory) as s:
                    version = s.get(ConfigVersion, version_id)
                    assert version is not None
                    run = queue.enqueue(s, version, "train", quota=quota)
                    with lock:
                        admitted.append(run.id)
            except QuotaExceeded as exc:
                with lock:
                    refused.append(exc.extra["limit"])

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(admitted) == 5 and refused == ["max_queued_runs"] * 19
