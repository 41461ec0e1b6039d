"""The runs table (filter, sort, pages), one run, cancel, reproduce, and comparing runs."""

from __future__ import annotations

from typing import Any

from flask import g, redirect, render_template, request, url_for

from registry.db import end_transaction
from registry.errors import BadRequest, FilterParseError
from registry.http import context
from registry.http.params import whole_number
from registry.http.web.blueprint import bp
from registry.http.web.history import mlflow_link, read_history
from registry.http.web.runinfo import (
    config_differences,
    metric_deltas,
    ordered_metrics,
    overlay_chart,
    progress_of,
    run_chart,
)
from registry.http.web.signin import current_viewer, requires
from registry.models import ACTIVE_STATUSES, Run
from registry.query import search as query
from registry.services import admission, queue
from registry.services.admission import QuotaExceeded

PAGE_SIZE = 50
MAX_COMPARE = 8
#: Column heading -> the order_by key it sorts by.
COLUMNS = (
    ("Run", "id"),
    ("Config", "config"),
    ("Version", "version"),
    ("Kind", "kind"),
    ("Status", "status"),
    ("Queue", "queue"),
    ("Attempt", "attempt"),
    ("Worker", "worker"),
    ("Created", "created_at"),
    ("val_loss", "metrics.val_loss"),
)
DEFAULT_ORDER = "id DESC"


@bp.get("/runs")
@requires("read")
def runs() -> Any:
    """Runs matching the filter, in the chosen order, one page at a time."""
    args = request.args
    expr, order = args.get("filter", "").strip(), args.get("order", DEFAULT_ORDER).strip()
    error: dict[str, Any] | None = None
    rows: list[Run] = []
    next_cursor: str | None = None
    try:
        rows, next_cursor = query.search_runs(
            g.db, expr or None, order or DEFAULT_ORDER, PAGE_SIZE, args.get("cursor") or None
        )
    except FilterParseError as err:
        error = {"message": err.message, "position": err.extra.get("position")}
    except query.InvalidCursor:
        return redirect(url_for("web.runs", filter=expr, order=order))
    now = queue.db_now(g.db)
    shown = [(run, progress_of(run, now)) for run in rows]
    return render_template(
        "runs.html",
        rows=shown,
        filter=expr,
        order=order,
        error=error,
        columns=COLUMNS,
        next_cursor=next_cursor,
        paged=bool(args.get("cursor")),
    ), (400 if error else 200)


@bp.get("/runs/<int:run_id>")
@requires("read")
def run_detail(run_id: int) -> Any:
    """Status, progress, error, metrics, curves, samples and provenance of one run.

    A running run's curves grow as its worker logs them (its first heartbeat names its MLflow
    run); the page refreshes itself while the run is active.
    """
    run = queue.get_run(g.db, run_id)
    original = queue.get_run(g.db, run.reproduces) if run.reproduces else None
    progress = progress_of(run, queue.db_now(g.db))
    end_transaction(g.db)  # MLflow is read with no transaction open: it can take seconds
    settings = context.settings()
    history = read_history(settings.mlflow_tracking_uri, run.mlflow_run_id, samples=True)
    return render_template(
        "run_detail.html",
        run=run,
        progress=progress,
        metrics=ordered_metrics(run.metrics),
        deltas=metric_deltas(original.metrics, run.metrics) if original else [],
        original=original,
        loss_chart=run_chart(history),
        history=history,
        mlflow_url=mlflow_link(settings.mlflow_ui_url, history, run.mlflow_run_id),
        active=run.status in ACTIVE_STATUSES,
    )


@bp.post("/runs/<int:run_id>/cancel")
@requires("write")
def cancel_run(run_id: int) -> Any:
    """Cancel a queued run now, or ask a running one to stop."""
    queue.cancel(g.db, run_id, queue.db_now(g.db))
    return redirect(url_for("web.run_detail", run_id=run_id), code=303)


@bp.post("/runs/<int:run_id>/reproduce")
@requires("write")
def reproduce_run(run_id: int) -> Any:
    """Queue an exact re-run (within the viewer's quota) and show it."""
    viewer = current_viewer()
    assert viewer is not None  # @requires signed them in
    quota = admission.quota_for(context.settings(), viewer.name, viewer.role)
    copy = queue.reproduce(g.db, run_id, quota=quota)
    return redirect(url_for("web.run_detail", run_id=copy.id), code=303)


@bp.errorhandler(QuotaExceeded)
def _quota_exceeded(err: QuotaExceeded) -> Any:
    """The error page for a run over the quota, with ``Retry-After``."""
    page = render_template("error.html", code=err.status, message=err.message)
    return page, err.status, {"Retry-After": str(err.retry_after)}


@bp.get("/compare")
@requires("read")
def compare() -> Any:
    """Two or more runs: their config differences and their curves on shared charts."""
    chosen = (whole_number(v, "run") for v in request.args.getlist("run"))
    ids = sorted({i for i in chosen if i is not None})[:MAX_COMPARE]
    if len(ids) < 2:
        raise BadRequest("pick two or more runs to compare (tick them in the runs table)")
    runs = [queue.get_run(g.db, i) for i in ids]
    end_transaction(g.db)  # no transaction open while MLflow is read
    uri = context.settings().mlflow_tracking_uri
    histories = [(run, read_history(uri, run.mlflow_run_id)) for run in runs]
    all_fields = request.args.get("all") == "1"
    return render_template(
        "compare.html",
        runs=runs,
        ids=ids,
        differences=config_differences(runs, all_fields),
        all_fields=all_fields,
        charts=[overlay_chart(k, histories) for k in ("val_loss", "train_loss")],
        metric_keys=[k for k, _ in ordered_metrics({k: 0 for r in runs for k in r.metrics or {}})],
    )
