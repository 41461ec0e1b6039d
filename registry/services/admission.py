"""Whether a run may be queued: a well-formed request, within its caller's quota.

The request: a known kind, a queue name, and for ``evaluate`` a succeeded train run; a
``train`` run may name one too (fine-tuning, :mod:`registry.services.finetune`). The quota
(:class:`Quota`, one per caller, built from the settings by :func:`quota_for`): the highest
priority the caller's role may give (403 naming ``priority``), how many of its runs may wait
(queued or running) at once, and how many it may queue per minute (429 ``quota_exceeded``
naming the limit, with ``retry_after``). Both counts are read from ``runs`` (``created_by``
holds who queued), so they hold across every server process; a per-caller lock (a
transaction-scoped advisory lock on PostgreSQL, SQLite's single writer) makes concurrent
requests of one caller count one after another. Admins, who can mint tokens anyway, have no
count limits and may use any priority the API accepts.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from registry.db import is_postgres
from registry.errors import BadRequest, Forbidden, InvalidInput, TooManyRequests
from registry.models import ACTIVE_STATUSES, RUN_KINDS, Run
from registry.services.finetune import check_finetune, task_differences
from registry.settings import Settings

#: The API's bounds on ``priority`` (any role).
MIN_PRIORITY, MAX_PRIORITY = -1000, 1000
WINDOW = dt.timedelta(minutes=1)
#: What a caller over its waiting-runs limit is told to wait: runs end when they end.
WAITING_RETRY_S = 60


class QuotaExceeded(TooManyRequests):
    """You have queued as many runs as your quota allows; wait and try again."""

    code = "quota_exceeded"

    def __init__(self, message: str, *, limit: str, allowed: int, retry_after: int) -> None:
        super().__init__(message, limit=limit, allowed=allowed, retry_after=retry_after)


@dataclass(frozen=True)
class Quota:
    """What one caller may queue; ``who`` is what its runs' ``created_by`` records."""

    who: str
    max_priority: int = MAX_PRIORITY
    #: Most runs queued or running at once (None: no limit).
    max_waiting: int | None = None
    #: Most runs queued in any minute (None: no limit).
    per_minute: int | None = None


def quota_for(settings: Settings, who: str, role: str) -> Quota:
    """The quota of a caller named ``who`` with ``role``."""
    if role == "admin":
        return Quota(who)
    return Quota(
        who,
        max_priority=min(settings.max_priority_submitter, MAX_PRIORITY),
        max_waiting=settings.max_queued_runs,
        per_minute=settings.runs_per_minute,
    )


def check_request(
    session: Session,
    kind: str,
    queue: str,
    from_run: int | None,
    document: Mapping[str, Any] | None = None,
) -> None:
    """BadRequest naming the field unless kind, queue and from_run make a run; a train run
    from a run (fine-tuning) is checked by :func:`registry.services.finetune.check_finetune`
    against the version's ``document``."""
    if kind not in RUN_KINDS:
        raise BadRequest(f"kind must be one of {', '.join(RUN_KINDS)}; got {kind!r}", field="kind")
    if not queue or len(queue) > 100:
        raise BadRequest("queue must be 1-100 characters", field="queue")
    if kind == "evaluate":
        _check_evaluable(session, from_run, document or {})
    elif from_run is not None:
        check_finetune(session, document or {}, from_run)


def _check_evaluable(session: Session, from_run: int | None, document: Mapping[str, Any]) -> None:
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
    task = document.get("task", "causal_lm")
    errors = task_differences(source.version.document, document, (task,)) if document else []
    if errors:
        what = f"from_run {from_run} cannot be evaluated as this config"
        raise InvalidInput(errors, f"{what}: {errors[0]['message']}")


def admit(session: Session, quota: Quota, priority: int, now: dt.datetime) -> None:
    """Refuse a run of ``priority`` that ``quota`` does not allow at ``now`` (403 or 429)."""
    check_priority(quota, priority)
    if quota.max_waiting is None and quota.per_minute is None:
        return
    _lock(session, quota.who)
    if quota.max_waiting is not None:
        _check_waiting(session, quota.who, quota.max_waiting)
    if quota.per_minute is not None:
        _check_rate(session, quota.who, quota.per_minute, now)


def check_priority(quota: Quota, priority: int) -> None:
    """403 naming ``priority`` when it is above what the caller's role may give."""
    if priority > quota.max_priority:
        raise Forbidden(
            f"priority {priority} is above {quota.max_priority}, the most your role may give",
            field="priority",
            allowed=quota.max_priority,
        )


def _lock(session: Session, who: str) -> None:
    """Serialise one caller's admissions until the transaction ends."""
    if is_postgres(session):
        key = func.hashtextextended(f"registry.quota:{who}", 0)
        session.execute(select(func.pg_advisory_xact_lock(key)))
    # SQLite: the transaction already holds the database's one write lock (BEGIN IMMEDIATE).


def _check_waiting(session: Session, who: str, allowed: int) -> None:
    waiting = session.scalar(
        select(func.count())
        .select_from(Run)
        .where(Run.created_by == who, Run.status.in_(ACTIVE_STATUSES))
    )
    if (waiting or 0) >= allowed:
        raise QuotaExceeded(
            f"{waiting} of your runs are queued or running, the most allowed "
            f"(max_queued_runs = {allowed}); queue more when some have finished",
            limit="max_queued_runs",
            allowed=allowed,
            retry_after=WAITING_RETRY_S,
        )


def _check_rate(session: Session, who: str, allowed: int, now: dt.datetime) -> None:
    # The allowed-th newest run of the last minute: the next slot opens a minute after it.
    oldest_counted = session.scalar(
        select(Run.created_at)
        .where(Run.created_by == who, Run.created_at > now - WINDOW)
        .order_by(Run.created_at.desc())
        .offset(allowed - 1)
        .limit(1)
    )
    if oldest_counted is not None:
        wait = (oldest_counted + WINDOW - now).total_seconds()
        raise QuotaExceeded(
            f"you queued {allowed} runs in the last minute, the most allowed "
            f"(runs_per_minute = {allowed}); try again in {max(1, math.ceil(wait))} s",
            limit="runs_per_minute",
            allowed=allowed,
            retry_after=max(1, math.ceil(wait)),
        )
