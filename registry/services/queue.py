"""The run queue: one small state machine over the ``runs`` table.

States and the moves between them (``attempt`` is the fencing token, the "lease")::

    queued --claim--> running --complete--> succeeded | failed
    queued --cancel--> cancelled
    running --cancel--> running + cancel_requested --complete/release/reap--> cancelled
    running --release (warm stop)--> queued, attempt + 1
    running --lease expired (reap)--> queued, attempt + 1 ; at attempt 3: failed, worker lost

Every function takes the session first, only flushes (the caller commits), and takes ``now``
wherever time matters, so expiry is tested without sleeping. The API passes the database's
clock (``db_now``). A report carrying an attempt other than the run's current one changes
nothing and raises ``StaleLease`` (409). Every run that finishes is indexed for the filter
language (``registry.services.indexing.index_finished_run``) in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, joinedload

from registry.db import is_postgres, utcnow
from registry.errors import BadRequest, Conflict, NotFound, StaleLease
from registry.models import FINISHED_STATUSES, RUN_KINDS, ConfigVersion, Run
from registry.services.duplicates import refuse_duplicate
from registry.services.indexing import index_finished_run
from registry.services.workers import touch_worker

MAX_ATTEMPTS = 3
FINISHED = FINISHED_STATUSES
COMPLETION_STATUSES = FINISHED_STATUSES


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
) -> Run:
    """Queue a ``train`` or ``evaluate`` run of ``version``; evaluate needs a trained from_run.

    Unless ``force``, a train run whose config hash and seed already succeeded with
    ``code_version`` is refused with DuplicateRun (409) naming that run.
    """
    if kind not in RUN_KINDS:
        raise BadRequest(f"kind must be one of {', '.join(RUN_KINDS)}; got {kind!r}", field="kind")
    if not queue or len(queue) > 100:
        raise BadRequest("queue must be 1-100 characters", field="queue")
    if kind == "evaluate":
        _check_evaluable(session, from_run)
    elif from_run is not None:
        raise BadRequest("from_run is only for kind 'evaluate'", field="from_run")
    if seed is None:
        seed = int(version.document.get("training", {}).get("seed", 42))
    if kind == "train" and not force and code_version:
        refuse_duplicate(session, version, seed, code_version)
    run = Run(
        config_version_id=version.id,
        kind=kind,
        status="queued",
        queue=queue,
        priority=int(priority),
        attempt=1,
        seed=seed,
        cancel_requested=False,
        from_run=from_run,
        reproduces=reproduces,
        created_by=created_by,
    )
    session.add(run)
    session.flush()
    return _loaded(session, run.id)


def _check_evaluable(session: Session, from_run: int | None) -> None:
    if from_run is None:
        raise BadRequest("kind 'evaluate' needs from_run: a succeeded train run", field="from_run")
    source = session.get(Run, from_run)
    if source is None:
        raise BadRequest(f"from_run {from_run} does not exist", field="from_run")
    if source.kind != "train" or source.status != "succeeded":
        raise BadRequest(
            f"from_run {from_run} is a {source.status} {source.kind} run; "
            "evaluate needs a succeeded train run",
            field="from_run",
        )


def reproduce(session: Session, run_id: int, created_by: str | None = None) -> Run:
    """Queue an exact re-run: the same version, kind, queue, seed and from_run."""
    source = _loaded(session, run_id)
    return enqueue(
        session,
        source.version,
        source.kind,
        queue=source.queue,
        priority=source.priority,
        from_run=source.from_run,
        reproduces=source.id,
        seed=source.seed,
        created_by=created_by,
    )


def claim(
    session: Session, worker_id: str, queues: Sequence[str], now: dt.datetime, lease_seconds: int
) -> Run | None:
    """Reap expired leases, then take the best queued run of ``queues`` in ONE statement.

    PostgreSQL: ``UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1)``, so
    concurrent claimers skip each other's candidate instead of waiting. SQLite has one writer
    at a time (``BEGIN IMMEDIATE``); the same UPDATE is guarded by ``status = 'queued'`` and
    RETURNING an empty result is the "row count 0" that means nothing was claimed.
    """
    if not queues:
        raise BadRequest("name at least one queue to claim from", field="queues")
    reap(session, now)
    candidate = (
        select(Run.id)
        .where(Run.status == "queued", Run.queue.in_(list(queues)))
        .order_by(Run.priority.desc(), Run.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    stmt = (
        update(Run)
        .where(Run.id == candidate, Run.status == "queued")
        .values(
            status="running",
            worker_id=worker_id,
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
    return _loaded(session, run_id)


def _current(session: Session, run_id: int, lease: int) -> Run:
    """The run, locked, when ``lease`` is its current attempt and it is running; else 409."""
    run = _loaded(session, run_id, lock=True)
    if run.status != "running" or run.attempt != lease:
        raise StaleLease(
            f"lease {lease} of run {run_id} is not current "
            f"(the run is {run.status} at attempt {run.attempt})",
            run=run_id,
            status=run.status,
            attempt=run.attempt,
            cancel_requested=run.cancel_requested,
        )
    return run


def heartbeat(
    session: Session,
    run_id: int,
    lease: int,
    now: dt.datetime,
    lease_seconds: int,
    progress: dict[str, Any] | None = None,
) -> Run:
    """Renew the lease; 409 when it is stale, expired (the run is then reaped) or cancelled."""
    run = _current(session, run_id, lease)
    if run.lease_expires_at is not None and run.lease_expires_at < now:
        # Not reaped here: a 409 rolls the request back. The next claim or listing reaps it.
        raise StaleLease(
            f"lease {lease} of run {run_id} expired at {run.lease_expires_at.isoformat()}",
            run=run_id,
            status=run.status,
            attempt=run.attempt,
            cancel_requested=run.cancel_requested,
        )
    if run.cancel_requested:
        raise StaleLease(
            f"run {run_id} was cancelled; stop it and report",
            run=run_id,
            status=run.status,
            attempt=run.attempt,
            cancel_requested=True,
        )
    run.lease_expires_at = now + dt.timedelta(seconds=lease_seconds)
    if progress is not None:
        run.progress = _finite(progress)
    if run.worker_id:
        touch_worker(session, run.worker_id, now, run.id)
    session.flush()
    return run


def complete(
    session: Session,
    run_id: int,
    lease: int,
    status: str,
    metrics: dict[str, Any] | None,
    mlflow_run_id: str | None,
    provenance: dict[str, Any] | None,
    error: dict[str, Any] | None,
    now: dt.datetime,
) -> Run:
    """Record a finished attempt once; the identical repeat is a no-op, anything stale a 409.

    A completion is accepted while the run is still ``running`` under this attempt even when
    the lease time has passed and nobody reaped it yet: the attempt is the fence, and keeping
    the finished work beats training it again.
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
    return run


def _same_completion(
    run: Run, lease: int, status: str, metrics: dict[str, Any], mlflow_run_id: str | None
) -> bool:
    """True when ``run`` already holds exactly this attempt's result (a resent completion)."""
    same_status = run.status == status or (run.status == "cancelled" and run.cancel_requested)
    return (
        run.attempt == lease
        and same_status
        and run.mlflow_run_id == mlflow_run_id
        and (run.metrics or {}) == metrics
    )


def release(session: Session, run_id: int, lease: int, now: dt.datetime) -> Run:
    """The worker's warm stop: hand the run back to the queue now, as attempt + 1.

    The attempt goes up so the released lease is stale at once and the next claim is a new
    attempt (and a new MLflow run). A run whose cancel was requested becomes ``cancelled``.
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


def reap(session: Session, now: dt.datetime) -> list[Run]:
    """Requeue (attempt + 1) or fail every running run whose lease expired before ``now``."""
    expired = list(
        session.scalars(
            select(Run)
            .where(Run.status == "running", Run.lease_expires_at < now)
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
        run.finished_at = now
    elif run.attempt >= MAX_ATTEMPTS:
        run.status = "failed"
        run.error = {
            "kind": "worker_lost",
            "message": f"worker lost: the lease expired on all {run.attempt} attempts "
            f"(last worker {run.worker_id})",
        }
        run.finished_at = now
    else:
        _back_to_queue(run)
        return
    run.lease_expires_at = None


def _back_to_queue(run: Run) -> None:
    run.status = "queued"
    run.attempt += 1
    run.worker_id = None
    run.lease_expires_at = None
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
