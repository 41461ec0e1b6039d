"""The queue's state machine with injected time, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from registry.db import make_session_factory, transaction
from registry.errors import BadRequest, Conflict, StaleLease
from registry.models import ConfigVersion, Run, Worker
from registry.services import queue, workers
from tests.support.builders import make_version

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
LEASE = 60


def at(seconds: float) -> dt.datetime:
    """T0 plus ``seconds``."""
    return T0 + dt.timedelta(seconds=seconds)


@pytest.fixture
def version(session: Session) -> ConfigVersion:
    return make_version(session)


def take(
    session: Session,
    worker: str = "w1",
    now: dt.datetime = T0,
    queues: tuple[str, ...] = ("default",),
) -> queue.Claim:
    """A claim that must find a run."""
    claimed = queue.claim(session, worker, list(queues), now, LEASE)
    assert claimed is not None
    return claimed


def snapshot(session: Session, run_id: int) -> dict[str, object]:
    """Every column of a run, read fresh."""
    session.expire_all()
    run = session.get(Run, run_id)
    assert run is not None
    return {c.key: getattr(run, c.key) for c in Run.__table__.columns}


def test_enqueue_defaults_seed_from_config(session: Session, version: ConfigVersion) -> None:
    run = queue.enqueue(session, version, "train", created_by="alice")
    assert (run.status, run.attempt, run.queue, run.priority, run.seed) == (
        "queued",
        1,
        "default",
        0,
        7,
    )
    assert run.version.config.name == "tiny"
    assert queue.enqueue(session, version, "train", seed=3).seed == 3


def test_enqueue_rejects_bad_kind_and_evaluate_without_trained_run(
    session: Session, version: ConfigVersion
) -> None:
    with pytest.raises(BadRequest):
        queue.enqueue(session, version, "sing")
    with pytest.raises(BadRequest, match="from_run"):
        queue.enqueue(session, version, "evaluate")
    train = queue.enqueue(session, version, "train")
    with pytest.raises(BadRequest, match="succeeded train run"):
        queue.enqueue(session, version, "evaluate", from_run=train.id)
    lease = take(session, "w").lease
    queue.complete(session, train.id, lease, "succeeded", {"train_loss": 1.0}, "m1", {}, None, T0)
    evaluate = queue.enqueue(session, version, "evaluate", from_run=train.id)
    assert evaluate.from_run == train.id


def test_claim_takes_priority_then_age_from_asked_queues_only(
    session: Session, version: ConfigVersion
) -> None:
    low = queue.enqueue(session, version, "train")
    high = queue.enqueue(session, version, "train", priority=5)
    other = queue.enqueue(session, version, "train", queue="gpu-large", priority=99)
    low2 = queue.enqueue(session, version, "train")
    order = [queue.claim(session, "w1", ["default"], T0, LEASE) for _ in range(4)]
    assert [c.run.id if c else None for c in order] == [high.id, low.id, low2.id, None]
    assert take(session, "w2", queues=("default", "gpu-large")).run.id == other.id


def test_claim_sets_lease_worker_and_start(session: Session, version: ConfigVersion) -> None:
    workers.register_worker(
        session, "w1", T0, host="h", devices={"kind": "cpu"}, queues=["default"]
    )
    run = queue.enqueue(session, version, "train")
    claimed = take(session, "w1", at(5)).run
    assert claimed.id == run.id
    assert claimed.status == "running" and claimed.worker_id == "w1"
    assert claimed.lease_expires_at == at(5 + LEASE)
    assert claimed.started_at == at(5)
    session.expire_all()
    worker = session.get(Worker, "w1")
    assert worker is not None and worker.current_run_id == run.id


def test_heartbeat_renews_and_records_progress(session: Session, version: ConfigVersion) -> None:
    run = queue.enqueue(session, version, "train")
    lease = take(session).lease
    queue.heartbeat(session, run.id, lease, at(50), LEASE, progress={"step": 3, "of": 10})
    # Past the first lease but within the renewed one: still current.
    renewed = queue.heartbeat(session, run.id, lease, at(100), LEASE)
    assert renewed.lease_expires_at == at(160)
    assert renewed.progress == {"step": 3, "of": 10}
    assert queue.reap(session, at(159)) == []


def test_expired_lease_requeues_as_next_attempt_and_fences_the_old_one(
    session: Session, version: ConfigVersion
) -> None:
    run = queue.enqueue(session, version, "train")
    old = take(session).lease
    assert queue.reap(session, at(LEASE)) == []  # expiry is strictly after the lease
    reaped = queue.reap(session, at(LEASE + 1))
    assert [r.id for r in reaped] == [run.id]
    state = snapshot(session, run.id)
    assert (state["status"], state["attempt"], state["worker_id"]) == ("queued", 2, None)
    again = take(session, "w2", at(LEASE + 2))
    assert (again.run.id, again.run.attempt, again.run.worker_id) == (run.id, 2, "w2")
    assert again.lease != old
    before = snapshot(session, run.id)
    with pytest.raises(StaleLease):
        queue.heartbeat(session, run.id, old, at(LEASE + 3), LEASE)
    with pytest.raises(StaleLease):
        queue.complete(
            session, run.id, old, "succeeded", {"train_loss": 9.0}, "old", {}, None, at(LEASE + 3)
        )
    assert snapshot(session, run.id) == before


def test_claim_reaps_before_claiming(session: Session, version: ConfigVersion) -> None:
    run = queue.enqueue(session, version, "train")
    take(session)
    assert queue.claim(session, "w2", ["default"], at(10), LEASE) is None
    again = take(session, "w2", at(LEASE + 1)).run
    assert (again.id, again.attempt) == (run.id, 2)


def test_three_lost_attempts_fail_the_run_as_worker_lost(
    session: Session, version: ConfigVersion
) -> None:
    run = queue.enqueue(session, version, "train")
    now = T0
    for attempt in (1, 2, 3):
        assert take(session, f"w{attempt}", now).run.attempt == attempt
        now += dt.timedelta(seconds=LEASE + 1)
        queue.reap(session, now)
    state = snapshot(session, run.id)
    assert state["status"] == "failed" and state["attempt"] == 3
    assert state["error"]["kind"] == "worker_lost"  # type: ignore[index]
    assert "worker lost" in state["error"]["message"]  # type: ignore[index]
    assert state["finished_at"] == now
    assert queue.claim(session, "w4", ["default"], now, LEASE) is None


def test_one_fencing_rule_expired_but_unreaped_is_current_for_all_three_reports(
    session: Session, version: ConfigVersion
) -> None:
    """Heartbeat, complete and release agree: past its time, a lease is current until reaped."""
    beat, done, back = (queue.enqueue(session, version, "train") for _ in range(3))
    leases = {run.id: take(session, f"w{run.id}").lease for run in (beat, done, back)}
    late = at(LEASE + 30)
    renewed = queue.heartbeat(session, beat.id, leases[beat.id], late, LEASE)
    assert renewed.lease_expires_at == late + dt.timedelta(seconds=LEASE)
    finished = queue.complete(
        session, done.id, leases[done.id], "succeeded", {"train_loss": 1.0}, "m", {}, None, late
    )
    assert finished.status == "succeeded"
    assert queue.release(session, back.id, leases[back.id], late).status == "queued"
    assert [r.id for r in queue.reap(session, late)] == []  # the renewed lease is not expired


def test_one_fencing_rule_once_reaped_all_three_reports_are_stale(
    session: Session, version: ConfigVersion
) -> None:
    run = queue.enqueue(session, version, "train")
    lease = take(session).lease
    queue.reap(session, at(LEASE + 1))
    before = snapshot(session, run.id)
    reports = (
        lambda: queue.heartbeat(session, run.id, lease, at(LEASE + 2), LEASE),
        lambda: queue.complete(
            session, run.id, lease, "succeeded", {"train_loss": 1.0}, "m", {}, None, at(LEASE + 2)
        ),
        lambda: queue.release(session, run.id, lease, at(LEASE + 2)),
    )
    for report in reports:
        with pytest.raises(StaleLease):
            report()
        assert snapshot(session, run.id) == before


def test_complete_records_result_and_repeat_is_idempotent(
    session: Session, version: ConfigVersion
) -> None:
    run = queue.enqueue(session, version, "train")
    lease = take(session).lease
    metrics = {"train_loss": 2.5, "val_loss": 2.75, "tiny": 1e-05}
    done = queue.complete(
        session, run.id, lease, "succeeded", metrics, "m1", {"seed": 7}, None, at(9)
    )
    assert (done.status, done.metrics, done.mlflow_run_id, done.finished_at) == (
        "succeeded",
        metrics,
        "m1",
        at(9),
    )
    session.commit()
    first = snapshot(session, run.id)
    again = queue.complete(
        session, run.id, lease, "succeeded", dict(metrics), "m1", {"seed": 7}, None, at(20)
    )
    assert again.id == run.id
    assert snapshot(session, run.id) == first
    with pytest.raises(StaleLease):
        queue.complete(
            session, run.id, lease, "succeeded", {"train_loss": 0.1}, "m1", {}, None, at(21)
        )
    with pytest.raises(StaleLease):
        queue.complete(session, run.id, lease, "failed", metrics, "m1", {}, None, at(21))
    # The identical report under any other lease is not a resend: 409 as well.
    with pytest.raises(StaleLease):
        queue.complete(session, run.id, "1", "succeeded", metrics, "m1", {"seed": 7}, None, at(22))
    assert snapshot(session, run.id) == first


def test_complete_failed_keeps_error_and_nan_is_stored_as_null(
    session: Session, version: ConfigVersion
) -> None:
    run = queue.enqueue(session, version, "train")
    lease = take(session).lease
    error = {"kind": "exception", "type": "ValueError", "message": "boom"}
    done = queue.complete(
        session, run.id, lease, "failed", {"train_loss": float("nan")}, "m", None, error, at(1)
    )
    session.commit()
    state = snapshot(session, run.id)
    assert state["status"] == "failed" and state["error"] == error
    assert state["metrics"] == {"train_loss": None} == done.metrics
    with pytest.raises(BadRequest):
        queue.complete(session, run.id, lease, "done", {}, None, None, None, at(2))


def test_cancel_queued_run_is_immediate(session: Session, version: ConfigVersion) -> None:
    run = queue.enqueue(session, version, "train")
    cancelled = queue.cancel(session, run.id, at(1))
    assert (cancelled.status, cancelled.finished_at) == ("cancelled", at(1))
    assert queue.claim(session, "w1", ["default"], at(2), LEASE) is None
    assert queue.cancel(session, run.id, at(3)).status == "cancelled"  # idempotent


def test_cancel_running_stops_at_heartbeat_and_completion_marks_cancelled(
    session: Session, version: ConfigVersion
) -> None:
    run = queue.enqueue(session, version, "train")
    lease = take(session).lease
    assert queue.cancel(session, run.id, at(1)).status == "running"
    with pytest.raises(StaleLease) as info:
        queue.heartbeat(session, run.id, lease, at(2), LEASE)
    assert info.value.to_dict()["cancel_requested"] is True
    assert info.value.status == 409
    done = queue.complete(
        session,
        run.id,
        lease,
        "failed",
        {"train_loss": 3.0},
        "m1",
        None,
        {"kind": "stopped", "message": "stopped"},
        at(3),
    )
    assert done.status == "cancelled" and done.finished_at == at(3)
    # The worker resending the same report is accepted once more, unchanged.
    assert (
        queue.complete(
            session, run.id, lease, "failed", {"train_loss": 3.0}, "m1", None, None, at(4)
        ).status
        == "cancelled"
    )


def test_cancel_running_whose_worker_died_ends_cancelled_not_requeued(
    session: Session, version: ConfigVersion
) -> None:
    run = queue.enqueue(session, version, "train")
    take(session)
    queue.cancel(session, run.id, at(1))
    queue.reap(session, at(LEASE + 1))
    assert snapshot(session, run.id)["status"] == "cancelled"


def test_cancel_finished_run_conflicts(session: Session, version: ConfigVersion) -> None:
    run = queue.enqueue(session, version, "train")
    queue.complete(session, run.id, take(session).lease, "succeeded", {}, None, None, None, at(1))
    with pytest.raises(Conflict):
        queue.cancel(session, run.id, at(2))


def test_release_hands_the_run_back_as_a_new_attempt(
    session: Session, version: ConfigVersion
) -> None:
    run = queue.enqueue(session, version, "train")
    lease = take(session).lease
    released = queue.release(session, run.id, lease, at(3))
    assert (released.status, released.attempt, released.worker_id) == ("queued", 2, None)
    assert released.lease_hash is None
    with pytest.raises(StaleLease):
        queue.release(session, run.id, lease, at(4))
    again = take(session, "w2", at(5)).run
    assert (again.id, again.attempt) == (run.id, 2)
    assert again.started_at == T0  # the first start is kept
    with pytest.raises(StaleLease):
        queue.heartbeat(session, run.id, lease, at(6), LEASE)


def test_release_of_cancel_requested_run_cancels_it(
    session: Session, version: ConfigVersion
) -> None:
    run = queue.enqueue(session, version, "train")
    lease = take(session).lease
    queue.cancel(session, run.id, at(1))
    assert queue.release(session, run.id, lease, at(2)).status == "cancelled"


def test_reproduce_queues_same_version_and_seed(session: Session, version: ConfigVersion) -> None:
    run = queue.enqueue(session, version, "train", seed=1234, queue="q", priority=2)
    copy = queue.reproduce(session, run.id, created_by="bob")
    assert (copy.config_version_id, copy.seed, copy.kind, copy.queue, copy.reproduces) == (
        version.id,
        1234,
        "train",
        "q",
        run.id,
    )
    assert copy.id != run.id and copy.status == "queued" and copy.attempt == 1


def test_workers_register_and_list(session: Session) -> None:
    workers.register_worker(session, "w1", T0, host="gpu-1", devices={"cuda": [0]}, queues=["a"])
    workers.register_worker(session, "w2", at(5), host="gpu-2")
    workers.register_worker(session, "w1", at(1), host="gpu-1b")
    assert [w.id for w in workers.list_workers(session)] == ["w2", "w1"]
    assert session.get(Worker, "w1").host == "gpu-1b"  # type: ignore[union-attr]


def test_concurrent_claimers_take_each_run_exactly_once(engine: Engine) -> None:
    """Threads with their own connections race for 60 runs; none is claimed twice."""
    factory = make_session_factory(engine)
    with transaction(factory) as s:
        version = make_version(s)
        for i in range(60):
            queue.enqueue(s, version, "train", priority=i % 3)
    claims: list[tuple[str, int]] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        while True:
            with transaction(factory) as s:
                claimed = queue.claim(s, name, ["default"], T0, LEASE)
                if claimed is None:
                    return
                with lock:
                    claims.append((name, claimed.run.id))

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    counts = Counter(run_id for _, run_id in claims)
    assert len(counts) == 60 and set(counts.values()) == {1}
    by_run = {run_id: name for name, run_id in claims}
    with factory() as s:
        rows = s.execute(select(Run.id, Run.status, Run.worker_id)).all()
    assert {status for _, status, _ in rows} == {"running"}
    assert {run_id: worker for run_id, _, worker in rows} == by_run


def test_reaping_an_old_run_keeps_the_workers_current_run(
    session: Session, version: ConfigVersion
) -> None:
    workers.register_worker(session, "w1", T0)
    old = queue.enqueue(session, version, "train")
    new = queue.enqueue(session, version, "train")
    take(session, "w1", T0)  # old, then abandoned
    take(session, "w1", at(50))  # new
    assert [r.id for r in queue.reap(session, at(LEASE + 1))] == [old.id]
    session.expire_all()
    worker = session.get(Worker, "w1")
    assert worker is not None and worker.current_run_id == new.id


def test_finished_runs_are_indexed_for_the_filter_language(
    session: Session, version: ConfigVersion
) -> None:
    from registry.models import RunMetric

    run = queue.enqueue(session, version, "train")
    queue.complete(
        session,
        run.id,
        take(session).lease,
        "succeeded",
        {"val_loss": 2.5, "train_loss": 2.0},
        "m",
        {"seed": 7},
        None,
        at(1),
    )
    indexed = session.execute(
        select(RunMetric.key, RunMetric.value).where(RunMetric.run_id == run.id)
    ).all()
    assert sorted(indexed) == [("train_loss", 2.0), ("val_loss", 2.5)]
    copy = queue.reproduce(session, run.id)
    queue.complete(
        session,
        copy.id,
        take(session, now=at(2)).lease,
        "succeeded",
        {"val_loss": 2.5, "train_loss": 2.0},
        "m2",
        {"seed": 7},
        None,
        at(3),
    )
    session.expire_all()
    assert session.get(Run, copy.id).identical is True  # type: ignore[union-attr]


def test_a_train_run_that_already_succeeded_with_this_code_is_refused_unless_forced(
    session: Session, version: ConfigVersion
) -> None:
    from registry.errors import DuplicateRun

    done = queue.enqueue(session, version, "train", force=False, code_version="1.0+gabc")
    lease = take(session, "w").lease
    provenance = {"code_version": "1.0+gabc", "seed": 7}
    queue.complete(
        session, done.id, lease, "succeeded", {"train_loss": 1.0}, "m", provenance, None, T0
    )

    with pytest.raises(DuplicateRun) as refused:
        queue.enqueue(session, version, "train", force=False, code_version="1.0+gabc")
    assert refused.value.status == 409 and refused.value.extra["run"] == done.id
    # Another seed, other code, force, or an evaluation are all new work.
    assert queue.enqueue(session, version, "train", seed=8, force=False, code_version="1.0+gabc")
    assert queue.enqueue(session, version, "train", force=False, code_version="1.1+gdef")
    assert queue.enqueue(session, version, "train", force=True, code_version="1.0+gabc")
    assert queue.enqueue(session, version, "evaluate", from_run=done.id, force=False)
    # reproduce is an explicit re-run of the same work.
    assert queue.reproduce(session, done.id).reproduces == done.id
