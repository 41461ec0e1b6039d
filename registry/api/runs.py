"""Run and worker routes: queue, list, read, cancel, reproduce; claim, heartbeat, complete."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from flask import current_app, g, jsonify, request
from pydantic import Field

from registry import configs, queue
from registry.api import bp
from registry.api.body import current_user, json_body
from registry.api.guard import requires
from registry.api.schemas import Body, parse_body
from registry.app import services
from registry.errors import BadRequest, FilterParseError
from registry.models import Run, Worker

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
    return services(current_app).settings.lease_seconds


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
    )
    return jsonify(run_json(run)), 201


# The filter language belongs to the query module; until it lands, ``filter`` accepts
# ``key = 'value'`` clauses joined by AND on the four keys that list_runs filters.
_CLAUSE = re.compile(r"\s*(status|config|queue|kind)\s*=\s*(?:'([^']*)'|\"([^\"]*)\"|(\w+))\s*")
_AND = re.compile(r"AND\b", re.IGNORECASE)


def equality_filters(expr: str) -> dict[str, str]:
    """``status = 'queued' AND config = 'x'`` -> ``{"status": "queued", "config": "x"}``."""
    found: dict[str, str] = {}
    pos = 0
    while True:
        match = _CLAUSE.match(expr, pos)
        if match is None:
            raise FilterParseError(
                "expected status|config|queue|kind = 'value'", position=pos, filter=expr
            )
        key, *values = match.groups()
        found[key] = next(v for v in values if v is not None)
        pos = match.end()
        if pos == len(expr):
            return found
        joined = _AND.match(expr, pos)
        if joined is None:
            raise FilterParseError("expected AND", position=pos, filter=expr)
        pos = joined.end()


def _limit(raw: str | None) -> int:
    try:
        limit = int(raw) if raw is not None else 100
    except ValueError:
        raise BadRequest(f"limit must be a whole number; got {raw!r}", field="limit") from None
    if not 1 <= limit <= 1000:
        raise BadRequest("limit must be between 1 and 1000", field="limit")
    return limit


@bp.get("/runs")
@requires("read")
def list_runs() -> Any:
    """Runs, newest first; equality filters on status, config, queue and kind."""
    args = request.args
    filters = {k: args[k] for k in ("status", "config", "queue", "kind") if k in args}
    if args.get("filter", "").strip():
        filters.update(equality_filters(args["filter"].strip()))
    queue.reap(g.db, queue.db_now(g.db))
    runs = queue.list_runs(
        g.db,
        **filters,
        limit=_limit(args.get("limit")),
        order_by=args.get("order_by") or "created_at DESC",
    )
    return jsonify({"runs": [run_json(r) for r in runs]})


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
    worker = queue.register_worker(
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
    return jsonify({"workers": [worker_json(w) for w in queue.list_workers(g.db)]})
