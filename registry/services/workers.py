"""Worker daemons as the service knows them: register, seen alive, listed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from registry.errors import BadRequest
from registry.models import Worker


def register_worker(
    session: Session,
    worker_id: str,
    now: dt.datetime,
    host: str | None = None,
    devices: dict[str, Any] | None = None,
    queues: Sequence[str] | None = None,
) -> Worker:
    """Create or refresh a worker's record."""
    if not worker_id or len(worker_id) > 200:
        raise BadRequest("worker must be 1-200 characters", field="worker")
    worker = session.get(Worker, worker_id)
    if worker is None:
        worker = Worker(id=worker_id, started_at=now)
        session.add(worker)
    worker.host = host
    worker.devices = devices
    worker.queues = list(queues) if queues is not None else None
    worker.last_heartbeat_at = now
    session.flush()
    return worker


def list_workers(session: Session) -> list[Worker]:
    """Every worker, the most recently seen first."""
    stmt = select(Worker).order_by(Worker.last_heartbeat_at.desc().nulls_last(), Worker.id)
    return list(session.scalars(stmt))


def touch_worker(
    session: Session,
    worker_id: str,
    now: dt.datetime | None,
    current_run_id: int | None,
    leaving: int | None = None,
) -> None:
    """Record a worker's current run (and that it was seen at ``now``).

    ``leaving``: the run it stops holding; the worker's row changes only if that is still its
    current run, so a late reap of an old run never hides the run it holds now.
    """
    values: dict[str, Any] = {"current_run_id": current_run_id}
    if now is not None:
        values["last_heartbeat_at"] = now
    stmt = update(Worker).where(Worker.id == worker_id)
    if leaving is not None:
        stmt = stmt.where(Worker.current_run_id == leaving)
    session.execute(stmt.values(**values).execution_options(synchronize_session=False))
