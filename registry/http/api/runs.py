"""Run and worker routes: queue, list, read, cancel, reproduce; claim, heartbeat, complete."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import g, jsonify

from registry.http import context
from registry.http.api.blueprint import bp
from registry.http.api.body import current_user
from registry.http.api.guard import requires
from registry.http.api.run_schemas import (
    ClaimRequest,
    CompleteRequest,
    CreateRunRequest,
    HeartbeatRequest,
    ListRunsQuery,
    RegisterRequest,
    ReleaseRequest,
)
from registry.http.api.schemas import accepts
from registry.models import Run, Worker
from registry.query import search as query
from registry.query.parse import And, Compare, In, Key, Node
from registry.services import (
    admission,
    configs,
    duplicates,
    progress,
    queue,
    remedies,
    workers,
)


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat() if value is not None else None


def run_json(run: Run) -> dict[str, Any]:
    """A run as the API shows it (times ISO-8601 UTC)."""
    return {
        "id": run.id,
        "config": run.version.config.name,
        "version": run.version.version,
        "config_hash": run.version.hash,
        "kind": run.kind,
        "status": run.status,
        "queue": run.queue,
        "priority": run.priority,
        "attempt": run.attempt,
        "worker": run.worker_id,
        "seed": run.seed,
        "metrics": run.metrics,
        "mlflow_run_id": run.mlflow_run_id,
        "provenance": run.provenance,
        "error": run.error,
        "progress": run.progress,
        "cancel_requested": run.cancel_requested,
        "reproduces": run.reproduces,
        "from_run": run.from_run,
        "created_by": run.created_by,
        "created_at": _iso(run.created_at),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "lease_expires_at": _iso(run.lease_expires_at),
        "provenance_complete": run.provenance_complete,
        "reproduced": run.reproduced,
        "identical": run.identical,
        "reproduction": run.reproduction,
        "on_oom": run.on_oom,
        "remedied_by": run.remedied_by,
    }


def worker_json(worker: Worker) -> dict[str, Any]:
    """A worker as the API shows it."""
    return {
        "id": worker.id,
        "host": worker.host,
        "devices": worker.devices,
        "queues": worker.queues,
        "started_at": _iso(worker.started_at),
        "last_heartbeat_at": _iso(worker.last_heartbeat_at),
        "current_run": worker.current_run_id,
    }


def _lease_seconds() -> int:
    return context.settings().lease_seconds


@bp.post("/runs")
@requires("write")
@accepts(body=CreateRunRequest)
def create_run(body: CreateRunRequest) -> Any:
    """Queue a train or evaluate run of a config version (the latest when omitted)."""
    version = configs.resolve_version(g.db, body.config, body.version)
    run = queue.enqueue(
        g.db,
        version,
        body.kind,
        queue=body.queue,
        priority=body.priority,
        from_run=body.from_run,
        seed=body.seed,
        created_by=current_user(),
        force=body.force,
        code_version=duplicates.pinned_code_version(),
        quota=_quota(),
        now=queue.db_now(g.db),
    )
    run = remedies.with_policy(g.db, run, body.on_oom)
    return jsonify(run_json(run)), 201


def _quota() -> admission.Quota:
    """What this request's token may queue."""
    return admission.quota_for(context.settings(), g.token.name, g.token.role)


#: Plain equality query arguments, kept beside ``filter`` for convenience (``?status=queued``).
EQUALITY_ARGS = ("status", "config", "queue", "kind")


def _shortcuts(params: ListRunsQuery) -> Node | None:
    """The plain equality arguments as filter clauses (``?status=queued&status=running`` is
    ``status IN (...)``), built as the syntax tree: their values are never filter text."""
    clauses: list[Node] = []
    for name in EQUALITY_ARGS:
        values = getattr(params, name)
        if len(values) == 1:
            clauses.append(Compare(Key("column", name), "=", values[0]))
        elif values:
            clauses.append(In(Key("column", name), tuple(values)))
    if len(clauses) > 1:
        return And(tuple(clauses))
    return clauses[0] if clauses else None


@bp.get("/runs")
@requires("read")
@accepts(params=ListRunsQuery)
def list_runs(params: ListRunsQuery) -> Any:
    """Runs matching ``filter`` (the filter language) by ``order_by``, paged by ``cursor``.

    Writes nothing: expired leases are the reaper's (registry.services.reaper)."""
    runs, next_cursor = query.search_runs(
        g.db,
        params.filter or None,
        where=_shortcuts(params),
        order_by=params.order_by or "id DESC",
        limit=params.limit,
        cursor=params.cursor or None,
    )
    return jsonify({"runs": [run_json(r) for r in runs], "next_cursor": next_cursor})


@bp.get("/runs/<int:run_id>")
@requires("read")
def get_run(run_id: int) -> Any:
    """One run."""
    return jsonify(run_json(queue.get_run(g.db, run_id)))


@bp.post("/runs/<int:run_id>/cancel")
@requires("write")
def cancel_run(run_id: int) -> Any:
    """Cancel a queued run now; a running one stops at its next heartbeat."""
    return jsonify(run_json(queue.cancel(g.db, run_id, queue.db_now(g.db))))


@bp.post("/runs/<int:run_id>/reproduce")
@requires("write")
def reproduce_run(run_id: int) -> Any:
    """Queue an exact re-run: the same config version, kind and seed."""
    copy = queue.reproduce(g.db, run_id, created_by=current_user(), quota=_quota())
    return jsonify(run_json(copy)), 201


@bp.post("/workers/claim")
@requires("work")
@accepts(body=ClaimRequest)
def claim(body: ClaimRequest) -> Any:
    """Claim the best queued run of the given queues: 200 with run, config and lease, or 204."""
    now, lease_seconds = queue.db_now(g.db), _lease_seconds()
    claimed = queue.claim(g.db, body.worker, body.queues, now, lease_seconds, body.devices)
    if claimed is None:
        return "", 204
    run = claimed.run
    source = queue.get_run(g.db, run.from_run) if run.from_run else None
    return jsonify(
        {
            "run": run_json(run),
            "config": run.version.document,
            "lease": claimed.lease,
            "lease_seconds": _lease_seconds(),
            "from_run": run_json(source) if source else None,
        }
    )


@bp.post("/runs/<int:run_id>/heartbeat")
@requires("work")
@accepts(body=HeartbeatRequest)
def heartbeat(run_id: int, body: HeartbeatRequest) -> Any:
    """Renew the lease, store progress and the attempt's MLflow run; 409 when the lease is stale
    or the run was cancelled (``cancel_requested``)."""
    lease, now = str(body.lease), queue.db_now(g.db)
    run = queue.heartbeat(
        g.db,
        run_id,
        lease,
        now,
        _lease_seconds(),
        progress=body.progress,
        mlflow_run_id=body.mlflow_run_id,
    )
    return jsonify(
        {
            "run": run.id,
            "attempt": run.attempt,
            "lease_expires_at": _iso(run.lease_expires_at),
            "mlflow_run_id": progress.reported_mlflow_run(run),
        }
    )


@bp.post("/runs/<int:run_id>/complete")
@requires("work")
@accepts(body=CompleteRequest)
def complete(run_id: int, body: CompleteRequest) -> Any:
    """Report a finished attempt; resending the same report is answered 200 again."""
    run = queue.complete(
        g.db,
        run_id,
        str(body.lease),
        body.status,
        body.metrics,
        body.mlflow_run_id,
        body.provenance,
        body.error,
        queue.db_now(g.db),
    )
    return jsonify(run_json(run))


@bp.post("/runs/<int:run_id>/release")
@requires("work")
@accepts(body=ReleaseRequest)
def release(run_id: int, body: ReleaseRequest) -> Any:
    """Hand a running run back to the queue at once (the worker is stopping)."""
    return jsonify(run_json(queue.release(g.db, run_id, str(body.lease), queue.db_now(g.db))))


@bp.post("/workers/register")
@requires("work")
@accepts(body=RegisterRequest)
def register_worker(body: RegisterRequest) -> Any:
    """Announce a worker: its host, devices and queues."""
    worker = workers.register_worker(
        g.db,
        body.worker,
        queue.db_now(g.db),
        host=body.host,
        devices=body.devices,
        queues=body.queues,
    )
    return jsonify(worker_json(worker))


@bp.get("/workers")
@requires("read")
def list_workers() -> Any:
    """Every worker, the most recently seen first."""
    return jsonify({"workers": [worker_json(w) for w in workers.list_workers(g.db)]})
