"""Run and worker bodies, parameters and answers of the JSON API as pydantic models.

``ANSWERS`` says what each run and worker route answers; ``registry.http.api.openapi`` adds the
answers it derives from the code (auth, body, parameters: see there).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import Field

from registry.http.api.schemas import Answer, Answers, Body, Document, Query, QueryInt
from registry.models import RUN_KINDS, RUN_STATUSES
from registry.query.search import MAX_LIMIT

QueueName = Field(default="default", min_length=1, max_length=100)
RunId = Field(default=None, ge=1, le=2**31 - 1)
#: The lease a claim answered, sent back unchanged. Any other value, an attempt number (what
#: leases were before) included, is answered 409 like every lease that is not current.
Lease = Annotated[str, Field(min_length=1, max_length=200)] | int


class CreateRunRequest(Body):
    """``POST /runs``."""

    config: str = Field(min_length=1, max_length=200)
    version: int | str | None = Field(default=None, description="a number or 'latest' (default)")
    kind: str = Field(default="train", pattern="^(train|evaluate)$")
    queue: str = QueueName
    priority: int = Field(default=0, ge=-1000, le=1000)
    from_run: int | None = RunId
    # What training.seed allows (0..2**32-1), which the 64-bit column (migration 0005) holds.
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    force: bool = Field(default=False, description="queue a train run that already succeeded")
    on_oom: str = Field(
        default="fail",
        pattern="^(fail|remedy)$",
        description="`remedy`: when the run fails for lack of memory, queue a new version of "
        "its config with the guide's next out-of-memory remedy (docs/queue.md)",
    )


class ClaimRequest(Body):
    """``POST /workers/claim``."""

    worker: str = Field(min_length=1, max_length=200)
    queues: list[str] = Field(default_factory=lambda: ["default"], min_length=1, max_length=50)
    devices: int | None = Field(
        default=None,
        ge=0,
        le=1024,
        description="the GPUs this worker owns: a run whose resources.gpus exceeds it is left "
        "for another worker; absent (a CPU worker): any run",
    )


class HeartbeatRequest(Body):
    """``POST /runs/<id>/heartbeat``."""

    lease: Lease
    progress: dict[str, Any] | None = None
    mlflow_run_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="the attempt's MLflow run, sent from its first heartbeat on: shown on the "
        "run while it trains; another one later in the same attempt is a 409",
    )


class CompleteRequest(Body):
    """``POST /runs/<id>/complete``."""

    lease: Lease
    status: str = Field(pattern="^(succeeded|failed|cancelled)$")
    metrics: dict[str, Any] = Field(default_factory=dict)
    mlflow_run_id: str | None = Field(default=None, max_length=64)
    provenance: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class ReleaseRequest(Body):
    """``POST /runs/<id>/release``."""

    lease: Lease


class RegisterRequest(Body):
    """``POST /workers/register``."""

    worker: str = Field(min_length=1, max_length=200)
    host: str | None = Field(default=None, max_length=200)
    devices: dict[str, Any] | None = None
    queues: list[str] | None = None


#: ``?status=queued`` (one value) or ``?status=queued&status=running`` (any of them).
Shortcut = Annotated[list[Annotated[str, Field(max_length=200)]], Field(max_length=20)]


class ListRunsQuery(Query):
    """``GET /runs``: the filter language, plain equality shortcuts, order and paging."""

    filter: str | None = Field(
        default=None,
        max_length=10_000,
        description="a filter-language expression, e.g. `metrics.val_loss < 2.5 AND status = "
        "'succeeded'`",
    )
    order_by: str | None = Field(
        default=None, max_length=1000, description="a filter key and ASC or DESC (default id DESC)"
    )
    limit: QueryInt = Field(default=100, ge=1, le=MAX_LIMIT, description="runs per page")
    cursor: str | None = Field(
        default=None, max_length=4000, description="the `next_cursor` of the page before"
    )
    status: Shortcut = Field(default_factory=list, description="only runs with this status")
    config: Shortcut = Field(default_factory=list, description="only runs of this config")
    queue: Shortcut = Field(default_factory=list, description="only runs on this queue")
    kind: Shortcut = Field(default_factory=list, description="only runs of this kind")


Stamp = Annotated[dt.datetime | None, Field(description="ISO-8601, UTC")]
JsonObject = dict[str, Any] | None


class RunAnswer(Answer):
    """A run as ``GET /runs/<id>`` shows it."""

    id: int
    config: str
    version: int
    config_hash: str
    kind: str = Field(json_schema_extra={"enum": list(RUN_KINDS)})
    status: str = Field(json_schema_extra={"enum": list(RUN_STATUSES)})
    queue: str
    priority: int
    attempt: int
    worker: str | None
    seed: int
    metrics: JsonObject
    mlflow_run_id: str | None
    provenance: JsonObject
    error: JsonObject
    progress: JsonObject
    cancel_requested: bool
    reproduces: int | None
    from_run: int | None
    created_by: str | None
    created_at: dt.datetime
    started_at: Stamp
    finished_at: Stamp
    lease_expires_at: Stamp
    provenance_complete: bool
    reproduced: bool
    identical: bool | None
    reproduction: JsonObject
    on_oom: str = Field(json_schema_extra={"enum": ["fail", "remedy"]})
    remedied_by: int | None = Field(
        description="the run queued with the next out-of-memory remedy of this failed run"
    )


class RunList(Answer):
    """``GET /runs``: one page, and the cursor of the next (null on the last page)."""

    runs: list[RunAnswer]
    next_cursor: str | None


class ClaimAnswer(Answer):
    """``POST /workers/claim``: the run, its normalised document and the claim's lease."""

    run: RunAnswer
    config: Document
    lease: str = Field(description="opaque; carry it back unchanged on heartbeat/complete/release")
    lease_seconds: int
    from_run: RunAnswer | None


class LeaseAnswer(Answer):
    """``POST /runs/<id>/heartbeat``: the lease is renewed until ``lease_expires_at``."""

    run: int
    attempt: int
    lease_expires_at: Stamp
    mlflow_run_id: str | None = Field(description="the MLflow run this attempt reported")


class WorkerAnswer(Answer):
    """A worker as ``GET /workers`` shows it."""

    id: str
    host: str | None
    devices: JsonObject
    queues: list[str] | None
    started_at: dt.datetime
    last_heartbeat_at: Stamp
    current_run: int | None


class WorkerList(Answer):
    """``GET /workers``."""

    workers: list[WorkerAnswer]


ANSWERS: dict[str, Answers] = {
    "api.create_run": {
        201: (RunAnswer, "the queued run"),
        404: (None, "no such config or version"),
        409: (None, "a succeeded train run already did this (code duplicate_run); pass force"),
        429: (None, "over the token's quota of queued runs, or too many failed tokens"),
    },
    "api.list_runs": {200: (RunList, "one page of runs")},
    "api.get_run": {200: (RunAnswer, "the run")},
    "api.cancel_run": {
        200: (RunAnswer, "cancelled, or cancel_requested while it runs"),
        409: (None, "the run already finished"),
    },
    "api.reproduce_run": {
        201: (RunAnswer, "the new queued run; `reproduces` names the old"),
        429: (None, "over the token's quota of queued runs, or too many failed tokens"),
    },
    "api.claim": {
        200: (ClaimAnswer, "a claimed run"),
        204: (None, "nothing queued on these queues"),
    },
    "api.heartbeat": {
        200: (LeaseAnswer, "the lease is renewed"),
        409: (
            None,
            "the lease is not current, or the run was cancelled (code stale_lease); or this "
            "attempt already reported another MLflow run (code mlflow_run_mismatch)",
        ),
    },
    "api.complete": {
        200: (RunAnswer, "the finished run"),
        409: (None, "the lease is not current (code stale_lease); nothing changed"),
    },
    "api.release": {
        200: (RunAnswer, "the run, queued again"),
        409: (None, "the lease is not current (code stale_lease); nothing changed"),
    },
    "api.register_worker": {200: (WorkerAnswer, "the worker as stored")},
    "api.list_workers": {200: (WorkerList, "every worker, most recently seen first")},
}
