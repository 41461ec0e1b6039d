"""``on_oom: remedy``: a run that ran out of memory queues its config's next remedy.

:func:`after_completion` runs in the transaction of the completion that reports the failure
(:func:`registry.services.queue.complete`). For a failed train run with ``on_oom = 'remedy'``
whose error the worker classified ``out_of_memory`` (:mod:`worker.failures`), it takes the
guide's next remedy (:func:`registry.document.remedies.next_remedy`, each remedy once per
chain: the chain's first run is found by walking ``remedied_by`` back), adds it as a new
version of the config (message ``remedy for run N: ...``, parent the failed run's version),
queues a run of it (same kind, queue, priority, seed, ``from_run`` and ``on_oom``; queued by
the failed run's owner, outside quotas: the service queues it, not a caller) and stores that
run's id in the failed run's ``remedied_by``. A fine-tune (``from_run``: its weights fix the
model) gets no smaller ``model_dim``. When no remedy is left, ``remedied_by`` stays null and
the error says so (``remedy: "exhausted"``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.document import remedies
from registry.models import Run
from registry.services import configs

ON_OOM = ("fail", "remedy")
#: :func:`registry.services.queue.enqueue`, passed in by its module (services import no cycle).
Enqueue = Callable[..., Run]
#: How far back a chain is walked to find its first run (a chain is at most a few remedies).
MAX_CHAIN = 64


def with_policy(session: Session, run: Run, on_oom: str) -> Run:
    """``run`` with its out-of-memory policy set (``fail`` or ``remedy``)."""
    run.on_oom = on_oom
    session.flush()
    return run


def _wants_remedy(run: Run) -> bool:
    error = run.error or {}
    return (
        run.on_oom == "remedy"
        and run.kind == "train"
        and run.status == "failed"
        and error.get("kind") == "out_of_memory"
        and run.remedied_by is None
    )


def chain_origin(session: Session, run: Run) -> Run:
    """The first run of ``run``'s chain of remedies (``run`` itself when it is no remedy)."""
    current = run
    for _ in range(MAX_CHAIN):
        before = session.scalars(select(Run).where(Run.remedied_by == current.id)).first()
        if before is None:
            return current
        current = before
    return current


def after_completion(session: Session, run: Run, now: dt.datetime, enqueue: Enqueue) -> Run:
    """Queue the next remedy of ``run`` with ``enqueue`` when it wants one (see the module)."""
    if not _wants_remedy(run):
        return run
    origin = chain_origin(session, run)
    found = remedies.next_remedy(
        run.version.document, origin.version.document, keep_model=run.from_run is not None
    )
    error = dict(run.error or {})
    if found is None:
        error["remedy"] = "exhausted"
        error["message"] = (
            f"{error.get('message', 'out of memory')} (on_oom remedy: the guide's out-of-memory "
            f"remedies are exhausted: {', '.join(remedies.ORDER)} each applied in this chain "
            f"since run {origin.id}, or not applicable)"
        )
    else:
        error["remedy"] = found.name
        run.remedied_by = _queue_remedy(session, run, found, now, enqueue).id
    run.error = error
    session.flush()
    return run


def _queue_remedy(
    session: Session, run: Run, found: remedies.Remedy, now: dt.datetime, enqueue: Enqueue
) -> Run:
    """The remedy as the config's next version (or the stored one with its hash), queued."""
    added = configs.add_version(
        session,
        run.version.config.name,
        found.document,
        message=f"remedy for run {run.id}: {found.explanation}",
        parent_version=run.version.version,
        created_by=run.created_by,
    )
    new = enqueue(
        session,
        added.version,
        run.kind,
        queue=run.queue,
        priority=run.priority,
        from_run=run.from_run,
        seed=run.seed,
        created_by=run.created_by,
        now=now,
    )
    return with_policy(session, new, "remedy")
