"""Read models for the web pages: config rows with their last run and best val_loss, queue
lengths and worker liveness. Flask-free; every function takes the session first and only reads.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from registry.models import ACTIVE_STATUSES, Config, ConfigVersion, Run, RunMetric, Worker
from registry.services import configs


@dataclass(frozen=True)
class ConfigRow:
    """One line of the config list."""

    name: str
    description: str | None
    latest_version: int | None
    latest_hash: str | None
    version_count: int
    created_at: dt.datetime
    last_run_id: int | None = None
    last_run_status: str | None = None
    best_val_loss: float | None = None


def config_rows(session: Session, search: str = "") -> list[ConfigRow]:
    """Every config whose name or description contains ``search`` (any case), by name."""
    needle = search.strip().lower()
    summaries = [
        s
        for s in configs.list_configs(session)
        if not needle
        or needle in s.config.name.lower()
        or needle in (s.config.description or "").lower()
    ]
    ids = [s.config.id for s in summaries]
    last = _last_runs(session, ids)
    best = _best_val_loss(session, ids)
    rows = []
    for s in summaries:
        run_id, status = last.get(s.config.id, (None, None))
        rows.append(
            ConfigRow(
                s.config.name,
                s.config.description,
                s.latest_version,
                s.latest_hash,
                s.version_count,
                s.config.created_at,
                run_id,
                status,
                best.get(s.config.id),
            )
        )
    return rows


def _last_runs(session: Session, config_ids: list[int]) -> dict[int, tuple[int | None, str | None]]:
    if not config_ids:
        return {}
    newest = (
        select(ConfigVersion.config_id, func.max(Run.id).label("run_id"))
        .join(Run, Run.config_version_id == ConfigVersion.id)
        .where(ConfigVersion.config_id.in_(config_ids))
        .group_by(ConfigVersion.config_id)
        .subquery()
    )
    rows = session.execute(
        select(newest.c.config_id, Run.id, Run.status).join(Run, Run.id == newest.c.run_id)
    )
    return {config_id: (run_id, status) for config_id, run_id, status in rows}


def _best_val_loss(session: Session, config_ids: list[int]) -> dict[int, float]:
    if not config_ids:
        return {}
    rows = session.execute(
        select(ConfigVersion.config_id, func.min(RunMetric.value))
        .join(Run, Run.config_version_id == ConfigVersion.id)
        .join(RunMetric, RunMetric.run_id == Run.id)
        .where(ConfigVersion.config_id.in_(config_ids), RunMetric.key == "val_loss")
        .group_by(ConfigVersion.config_id)
    )
    return {config_id: float(value) for config_id, value in rows}


def trained_runs(session: Session, name: str, limit: int = 50) -> list[Run]:
    """The newest succeeded train runs of config ``name`` (what an evaluate run starts from)."""
    stmt = (
        select(Run)
        .join(Run.version)
        .join(ConfigVersion.config)
        .where(Config.name == name, Run.kind == "train", Run.status == "succeeded")
        .options(joinedload(Run.version))
        .order_by(Run.id.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))


@dataclass
class QueueRow:
    """One queue: how many runs wait and run in it, and the live workers listening to it."""

    name: str
    queued: int = 0
    running: int = 0
    listeners: list[str] = field(default_factory=list)

    @property
    def stranded(self) -> bool:
        """Runs wait here and no live worker listens."""
        return self.queued > 0 and not self.listeners


@dataclass(frozen=True)
class WorkerRow:
    """A worker and whether it has been heard from recently."""

    worker: Worker
    live: bool
    seconds_since: float | None


def worker_rows(session: Session, now: dt.datetime, live_seconds: float) -> list[WorkerRow]:
    """Every worker, most recently seen first, with its liveness at ``now``."""
    rows = []
    stmt = select(Worker).order_by(Worker.last_heartbeat_at.desc().nulls_last(), Worker.id)
    for worker in session.scalars(stmt):
        seen = worker.last_heartbeat_at
        since = (now - seen).total_seconds() if seen is not None else None
        rows.append(WorkerRow(worker, since is not None and since <= live_seconds, since))
    return rows


def queue_rows(session: Session, workers: Sequence[WorkerRow]) -> list[QueueRow]:
    """Each queue that holds queued or running runs or has a listener, by name."""
    queues: dict[str, QueueRow] = {}
    counts = session.execute(
        select(Run.queue, Run.status, func.count())
        .where(Run.status.in_(ACTIVE_STATUSES))
        .group_by(Run.queue, Run.status)
    )
    for name, status, count in counts:
        row = queues.setdefault(name, QueueRow(name))
        setattr(row, status, int(count))
    for w in workers:
        for name in w.worker.queues or ["default"]:
            row = queues.setdefault(name, QueueRow(name))
            if w.live:
                row.listeners.append(w.worker.id)
    return [queues[k] for k in sorted(queues)]
