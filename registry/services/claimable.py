"""Which queued run a claim takes: the best of its queues that fits its devices (CONTRACT 5.7).

A run asks for ``resources.gpus`` GPUs in its config version's document, which the query index
holds as the ``version_params`` row ``resources.gpus``. A claim that says ``devices`` (a GPU
worker owning that many) leaves a run asking for more for another worker; a claim without it
(a CPU worker) may take any run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.sql.elements import ColumnElement

from registry.models import Run, VersionParam

GPUS_KEY = "resources.gpus"


def needs_more_gpus(devices: int) -> ColumnElement[bool]:
    """SQL: the run's version asks for more than ``devices`` GPUs."""
    return exists().where(
        VersionParam.version_id == Run.config_version_id,
        VersionParam.key == GPUS_KEY,
        VersionParam.num > devices,
    )


def best_candidate(queues: Sequence[str], devices: int | None) -> Any:
    """The id of the best claimable run, as a scalar subquery locked with SKIP LOCKED (so
    concurrent claimers on PostgreSQL skip each other's candidate): highest priority first,
    then the oldest."""
    wanted = [Run.status == "queued", Run.queue.in_(list(queues))]
    if devices is not None:
        wanted.append(~needs_more_gpus(devices))
    return (
        select(Run.id)
        .where(*wanted)
        .order_by(Run.priority.desc(), Run.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
