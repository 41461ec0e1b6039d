"""Run and worker routes: queue, list, read, cancel, reproduce; claim, heartbeat, complete."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import g, jsonify, request
from pydantic import Field

from registry.document.codeversion import code_version, is_exact
from registry.errors import BadRequest
from registry.http import context
from registry.http.api import bp
from registry.http.api.body import current_user, json_body
from registry.http.api.guard import requires
from registry.http.api.schemas import Body, parse_body
from registry.models import Run, Worker
from registry.query import search as query
from registry.services import configs, queue, workers

QueueName = Field(default="default", min_length=1, max_length=100)


class CreateRunRequest(Body):
    """``POST /runs``."""

    config: str = Field(min_length=1, max_length=200)
    version: int | str | None = None
    kind: str = Field(default="train", pattern="^(train|evaluate)$")
    queue: str = QueueName
    priority: int = Field(default=0, ge=-1000, le=1000)
    from_run: int | None = Field(default=None, ge=1, le=2**31 - 1)
    seed: int | None = Field(default=None, ge=-(2**31), le=2**31 - 1)
    force: bool = False


class ClaimRequest(Body):
    """``POST /workers/claim``."""

    worker: str = Field(min_length=1, max_length=200)
    queues: list[str] = Field(default_factory=lambda: ["default"], min_length=1, max_length=50)


class HeartbeatRequest(Body):
    """``POST /runs/<id>/heartbeat``."""

    lease: int = Field(ge=1)
    progress: dict[str, Any] | None = None


class CompleteRequest(Body):
    """``POST /runs/<id>/complete``."""

    lease: int = Field(ge=1)
    status: str = Field(pattern="^(succeeded|failed|cancelled)$")
    metrics: dict[str, Any] = Field(default_factory=dict)
    mlflow_run_id: str | None = Field(default=None, max_length=64)
    provenance: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class ReleaseRequest(Body):
    """``POST /runs/<id>/release``."""

    lease: int = Field(ge=1)


class RegisterRequest(Body):
    """``POST /workers/register``."""

    worker: str = Field(min_length=1, max_length=200)
    host: str | None = Field(default=None, max_length=200)
    devices: dict[str, Any] | None = None
    queues: list[str] | None = None


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
def create_run() -> Any:
    """Queue a train or evaluate run of a config version (the latest when omitted)."""
    body = parse_body(CreateRunRequest, json_body())
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
        code_version=_exact_code_version(),
    )
    return jsonify(run_json(run)), 201


def _exact_code_version() -> str | None:
    """This service's code version when it pins the code (a clean checkout), else None."""
    info = code_version()
    return str(info["code_version"]) if is_exact(info) else None


#: Plain equality query arguments, kept beside ``filter`` for convenience (``?status=queued``).
EQUALITY_ARGS = ("status", "config", "queue", "kind")


def _combined_filter(args: Any) -> str | None:
    """``filter`` ANDed with any plain equality arguments, quoted for the filter language."""
    quote = "'"
    clauses = [f"{k} = '{args[k].replace(quote, quote * 2)}'" for k in EQUALITY_ARGS if k in args]
    expr = args.get("filter", "").strip()
    if expr:
        clauses.append(f"({expr})" if clauses else expr)
    return " AND ".join(clauses) or None


def _limit(raw: str | None) -> int:
    try:
        limit = int(raw) if raw is not None else 100
    except ValueError:
        raise BadRequest(f"limit must be a whole number; got {raw!r}", field="limit") from None
    return query.check_limit(limit)


@bp.get("/runs")
@requires("read")
def list_runs() -> Any:
    """Runs matching ``filter`` (the filter language) by ``order_by``, paged by ``cursor``."""
    args = request.args
    queue.reap(g.db, queue.db_now(g.db))
    runs, next_cursor = query.search_runs(
        g.db,
        _combined_filter(args),
        order_by=args.get("order_by") or "id DESC",
        limit=_limit(args.get("limit")),
        cursor=args.get("cursor") or None,
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
    return jsonify(run_json(queue.reproduce(g.db, run_id, created_by=current_user()))), 201


@bp.post("/workers/claim")
@requires("work")
def claim() -> Any:
    """Claim the best queued run of the given queues: 200 with run, config and lease, or 204."""
    body = parse_body(ClaimRequest, json_body())
    run = queue.claim(g.db, body.worker, body.queues, queue.db_now(g.db), _lease_seconds())
    if run is None:
        return "", 204
    source = queue.get_run(g.db, run.from_run) if run.from_run else None
    return jsonify(
        {
            "run": run_json(run),
            "config": run.version.document,
            "lease": run.attempt,
            "lease_seconds": _lease_seconds(),
            "from_run": run_json(source) if source else None,
        }
    )


@bp.post("/runs/<int:run_id>/heartbeat")
@requires("work")
def heartbeat(run_id: int) -> Any:
    """Renew the lease; 409 when it is stale or the run was cancelled (``cancel_requested``)."""
    body = parse_body(HeartbeatRequest, json_body())
    run = queue.heartbeat(
        g.db, run_id, body.lease, queue.db_now(g.db), _lease_seconds(), progress=body.progress
    )
    return jsonify(
        {"run": run.id, "lease": run.attempt, "lease_expires_at": _iso(run.lease_expires_at)}
    )


@bp.post("/runs/<int:run_id>/complete")
@requires("work")
def complete(run_id: int) -> Any:
    """Report a finished attempt; resending the same report is answered 200 again."""
    body = parse_body(CompleteRequest, json_body())
    run = queue.complete(
        g.db,
        run_id,
        body.lease,
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
def release(run_id: int) -> Any:
    """Hand a running run back to the queue at once (the worker is stopping)."""
    body = parse_body(ReleaseRequest, json_body())
    return jsonify(run_json(queue.release(g.db, run_id, body.lease, queue.db_now(g.db))))


@bp.post("/workers/register")
@requires("work")
def register_worker() -> Any:
    """Announce a worker: its host, devices and queues."""
    body = parse_body(RegisterRequest, json_body())
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
