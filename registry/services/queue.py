"""The run queue: one small state machine over the ``runs`` table::

    queued --claim (a new lease)--> running --complete--> succeeded | failed
    queued --cancel--> cancelled
    running --cancel--> running + cancel_requested --complete/release/reap--> cancelled
    running --release (warm stop)--> queued, attempt + 1
    running --lease expired (reap)--> queued, attempt + 1 ; at attempt 3: failed, worker lost

Each claim makes a new lease, the fencing token: an opaque, unguessable string of which only
the sha256 is stored (:mod:`registry.services.leases`). A report (heartbeat, complete, release)
carrying any other value changes nothing and raises ``StaleLease`` (409), whoever sends it;
``attempt`` only counts tries; :mod:`registry.services.reaper` reaps every few seconds.
Functions take the session first, only flush (the caller commits) and take ``now`` (the API
passes ``db_now``). :mod:`registry.services.admission` says what may be queued.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, joinedload

from registry.db import is_postgres, utcnow
from registry.errors import BadRequest, Conflict, NotFound, StaleLease
from registry.models import FINISHED_STATUSES, ConfigVersion, Run
from registry.services import leases, remedies
from registry.services.admission import Quota, admit, check_request
from registry.services.claimable import best_candidate
from registry.services.duplicates import refuse_duplicate
from registry.services.indexing import index_finished_run
from registry.services.progress import note
from registry.services.workers import touch_worker

MAX_ATTEMPTS = 3
FINISHED = FINISHED_STATUSES
COMPLETION_STATUSES = FINISHED_STATUSES


@dataclass(frozen=True)
class Claim:
    """A claimed run and its lease: the only time the service knows the lease itself."""

    run: Run
    lease: str


def db_now(session: Session) -> dt.datetime:
    """The database's clock (PostgreSQL), or this process's UTC clock for embedded SQLite."""
    if is_postgres(session):
        value = session.scalar(select(func.statement_timestamp()))
        assert value is not None
        return value.astimezone(dt.UTC)
    return utcnow()


def _loaded(session: Session, run_id: int, lock: bool = False) -> Run:
    """The run with its version and config, fresh from the database; 404 when absent."""
    stmt = (
        select(Run)
        .where(Run.id == run_id)
        .options(
            joinedload(Run.version, innerjoin=True).joinedload(ConfigVersion.config, innerjoin=True)
        )
        .execution_options(populate_existing=True)
    )
    if lock:  # only the run's row: reports on one run serialise, claims skip it
        stmt = stmt.with_for_update(of=Run)
    run = session.scalars(stmt).first()
    if run is None:
        raise NotFound(f"no run {run_id}", run=run_id)
    return run


def get_run(session: Session, run_id: int) -> Run:
    """One run; 404 when absent."""
    return _loaded(session, run_id)


def enqueue(
    session: Session,
    version: ConfigVersion,
    kind: str,
    queue: str = "default",
    priority: int = 0,
    from_run: int | None = None,
    reproduces: int | None = None,
    seed: int | None = None,
    created_by: str | None = None,
    *,
    force: bool = True,
    code_version: str | None = None,
    quota: Quota | None = None,
    now: dt.datetime | None = None,
) -> Run:
    """Queue a run of ``version``: 409 when a train run repeats work done by ``code_version``
    (unless ``force``), 403/429 outside its caller's ``quota``, counted at ``now``."""
    check_request(session, kind, queue, from_run, version.document)
    seed = int(version.document.get("training", {}).get("seed", 42)) if seed is None else seed
    if kind == "train" and not force and code_version:
        refuse_duplicate(session, version, seed, code_version, from_run)
    if quota is not None:
        now, created_by = now or db_now(session), quota.who
        admit(session, quota, int(priority), now)
    run = Run(  # status, attempt and cancel_requested: the model's defaults
        config_version_id=version.id,
        kind=kind,
        queue=queue,
        priority=int(priority),
        seed=seed,
        from_run=from_run,
        reproduces=reproduces,
        created_by=created_by,
        created_at=now or utcnow(),
    )
    session.add(run)
    session.flush()
    return _loaded(session, run.id)


def reproduce(
    session: Session, run_id: int, created_by: str | None = None, *, quota: Quota | None = None
) -> Run:
    """Queue an exact re-run (version, kind, queue, seed, from_run); priority capped by quota."""
    source = _loaded(session, run_id)
    priority = source.priority if quota is None else min(source.priority, quota.max_priority)
    return enqueue(
        session,
        source.version,
        source.kind,
        queue=source.queue,
        priority=priority,
        from_run=source.from_run,
        reproduces=source.id,
        seed=source.seed,
        created_by=created_by,
        quota=quota,
    )


def claim(
    session: Session,
    worker_id: str,
    queues: Sequence[str],
    now: dt.datetime,
    lease_seconds: int,
    devices: int | None = None,
) -> Claim | None:
    """Reap expired leases (if no other reap runs), then claim the best of ``queues`` that
    fits ``devices`` GPUs (None: any run) at once (:mod:`registry.services.claimable`).

    PostgreSQL: ``UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1)``, so
    concurrent claimers skip each other's candidate. SQLite has one writer (``BEGIN IMMEDIATE``);
    the UPDATE is guarded by ``status = 'queued'``, and RETURNING nothing means no claim.
    """
    if not queues:
        raise BadRequest("name at least one queue to claim from", field="queues")
    reap(session, now, CLAIM_FINISH_AFTER)  # finishing is the reaper's first: it ends MLflow runs
    candidate = best_candidate(queues, devices)
    lease, lease_hash = leases.new_lease()
    stmt = (
        update(Run)
        .where(Run.id == candidate, Run.status == "queued")
        .values(
            status="running",
            worker_id=worker_id,
            lease_hash=lease_hash,
            lease_expires_at=now + dt.timedelta(seconds=lease_seconds),
            started_at=func.coalesce(Run.started_at, now),
            progress=None,
        )
        .returning(Run.id)
        .execution_options(synchronize_session=False)
    )
    run_id = session.execute(stmt).scalar()
    if run_id is None:
        return None
    touch_worker(session, worker_id, now, run_id)
    return Claim(_loaded(session, run_id), lease)


def _stale(run: Run, message: str) -> StaleLease:
    state = {"status": run.status, "attempt": run.attempt, "cancel_requested": run.cancel_requested}
    return StaleLease(message, run=run.id, **state)


def _current(session: Session, run_id: int, lease: str) -> Run:
    """The run, locked, when it is running and ``lease`` is its current claim's; else 409."""
    run = _loaded(session, run_id, lock=True)
    if run.status != "running" or not leases.matches(lease, run.lease_hash):
        # Never echo the lease sent: the answer names the run's state only.
        raise _stale(
            run,
            f"the lease sent is not the current lease of run {run_id} "
            f"(the run is {run.status} at attempt {run.attempt})",
        )
    return run


def heartbeat(
    session: Session,
    run_id: int,
    lease: str,
    now: dt.datetime,
    lease_seconds: int,
    progress: dict[str, Any] | None = None,
    mlflow_run_id: str | None = None,
) -> Run:
    """Renew the lease; 409 when it is not current (docs/queue.md, "Fencing") or cancelled.

    A lease whose time passed but that nobody reaped yet is still current, as for complete
    and release: the reap, not the clock, ends a lease. ``mlflow_run_id``: the attempt's
    MLflow run, shown while it runs (:func:`registry.services.progress.note`).
    """
    run = _current(session, run_id, lease)
    if run.cancel_requested:
        raise _stale(run, f"run {run_id} was cancelled; stop it and report")
    note(run, _finite(progress) if progress is not None else None, mlflow_run_id)
    run.lease_expires_at = now + dt.timedelta(seconds=lease_seconds)
    if run.worker_id:
        touch_worker(session, run.worker_id, now, run.id)
    session.flush()
    return run


def complete(
    session: Session,
    run_id: int,
    lease: str,
    status: str,
    metrics: dict[str, Any] | None,
    mlflow_run_id: str | None,
    provenance: dict[str, Any] | None,
    error: dict[str, Any] | None,
    now: dt.datetime,
) -> Run:
    """Record a finished attempt once; the identical repeat is a no-op, anything stale a 409.

    Accepted while the run is ``running`` under this lease, also past its time if nobody
    reaped it yet: the lease is the fence, and keeping finished work beats training it again.
    """
    if status not in COMPLETION_STATUSES:
        raise BadRequest(
            f"status must be one of {', '.join(COMPLETION_STATUSES)}; got {status!r}",
            field="status",
        )
    metrics = _finite(metrics or {})
    run = _loaded(session, run_id, lock=True)
    if run.status in FINISHED and _same_completion(run, lease, status, metrics, mlflow_run_id):
        return run
    run = _current(session, run_id, lease)
    run.status = "cancelled" if run.cancel_requested else status
    run.metrics = metrics
    run.mlflow_run_id = mlflow_run_id
    run.provenance = _finite(provenance) if provenance is not None else None
    run.error = _finite(error) if error is not None else None
    if run.status == "cancelled" and run.error is None:
        run.error = {"kind": "cancelled", "message": "cancelled by request"}
    _finish(session, run, now)
    return remedies.after_completion(session, run, now, enqueue)  # on_oom: the next remedy


def _same_completion(
    run: Run, lease: str, status: str, metrics: dict[str, Any], mlflow_run_id: str | None
) -> bool:
    """True when ``run`` already holds exactly this lease's result (a resent completion).

    A finished run keeps its last lease's digest for this check alone.
    """
    same_status = run.status == status or (run.status == "cancelled" and run.cancel_requested)
    return (
        leases.matches(lease, run.lease_hash)
        and same_status
        and run.mlflow_run_id == mlflow_run_id
        and (run.metrics or {}) == metrics
    )


def release(session: Session, run_id: int, lease: str, now: dt.datetime) -> Run:
    """The worker's warm stop: hand the run back to the queue now, as attempt + 1.

    The lease is dropped so it is stale at once, and the next claim is a new attempt (and a new
    MLflow run). A run whose cancel was requested becomes ``cancelled``.
    """
    run = _current(session, run_id, lease)
    if run.cancel_requested:
        run.status = "cancelled"
        run.error = {"kind": "cancelled", "message": "cancelled by request"}
        _finish(session, run, now)
        return run
    worker_id = run.worker_id
    _back_to_queue(run)
    if worker_id:
        touch_worker(session, worker_id, now, None, leaving=run.id)
    session.flush()
    return run


def cancel(session: Session, run_id: int, now: dt.datetime) -> Run:
    """Cancel a queued run now; ask a running one to stop at its next heartbeat."""
    run = _loaded(session, run_id, lock=True)
    if run.status == "queued":
        run.status = "cancelled"
        run.error = {"kind": "cancelled", "message": "cancelled before it started"}
        _finish(session, run, now)
    elif run.status == "running":
        run.cancel_requested = True
        session.flush()
    elif run.status != "cancelled":
        raise Conflict(f"run {run_id} already {run.status}", run=run_id, status=run.status)
    return run


REAP_LOCK = 0x7265_6170_7275_6E73  #: PostgreSQL's advisory lock of the one reap at a time
CLAIM_FINISH_AFTER = dt.timedelta(seconds=10)  #: a claim's reap leaves finishing to the reaper


def reap(
    session: Session, now: dt.datetime, finish_after: dt.timedelta = dt.timedelta(0)
) -> list[Run]:
    """Requeue (attempt + 1) or finish every running run whose lease expired before ``now``;
    one it would finish (cancel asked, or its last attempt) only ``finish_after`` past expiry.

    One reap at a time across processes and hosts: PostgreSQL's advisory lock (held elsewhere:
    this one does nothing), SQLite's single writer. Each row is locked: a completion of the same
    lease waits, then finds it stale."""
    lock = select(func.pg_try_advisory_xact_lock(REAP_LOCK))
    if is_postgres(session) and not session.scalar(lock):
        return []
    finishing = or_(Run.cancel_requested, Run.attempt >= MAX_ATTEMPTS)
    expired = list(
        session.scalars(
            select(Run)
            .where(Run.status == "running", Run.lease_expires_at < now)
            .where(~finishing | (Run.lease_expires_at < now - finish_after))
            .order_by(Run.id)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )
    )
    for run in expired:
        worker_id = run.worker_id
        _requeue_or_fail(run, now)
        if worker_id:
            touch_worker(session, worker_id, None, None, leaving=run.id)
        if run.status in FINISHED:
            session.flush()
            index_finished_run(session, run)
    session.flush()
    return expired


def _requeue_or_fail(run: Run, now: dt.datetime) -> None:
    """Expiry of ``run``'s lease: cancelled if asked, failed after MAX_ATTEMPTS, else queued."""
    if run.cancel_requested:
        run.status = "cancelled"
        run.error = {"kind": "cancelled", "message": "cancelled; its worker stopped answering"}
    elif run.attempt >= MAX_ATTEMPTS:
        run.status = "failed"
        lost = f"worker lost: the lease expired on all {run.attempt} attempts"
        run.error = {"kind": "worker_lost", "message": f"{lost} (last worker {run.worker_id})"}
    else:
        _back_to_queue(run)
        return
    run.finished_at = now
    run.lease_expires_at = None
    run.lease_hash = None  # its worker is gone: no report of that claim is taken any more


def _back_to_queue(run: Run) -> None:
    run.status = "queued"
    run.attempt += 1
    run.worker_id = None
    run.lease_expires_at = None
    run.lease_hash = None
    run.progress = None


def _finish(session: Session, run: Run, now: dt.datetime) -> None:
    run.finished_at = now
    run.lease_expires_at = None
    if run.worker_id:
        touch_worker(session, run.worker_id, now, None, leaving=run.id)
    session.flush()
    index_finished_run(session, run)


def _finite(value: Any) -> Any:
    """JSON-safe copy: NaN and infinities become None (PostgreSQL's JSONB rejects them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
