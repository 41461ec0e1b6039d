"""``registry runs list|show|cancel`` and ``registry reproduce``."""

from __future__ import annotations

from typing import Any

import click

from registry.cli.context import current_client, echo_json
from registry.client import API

#: Metrics shown as columns by ``runs list``.
LIST_METRICS = ("train_loss", "val_loss", "val_accuracy")


@click.group()
def runs() -> None:
    """Runs: list, show, cancel."""


@runs.command("list")
@click.option("--filter", "filter_", metavar="EXPR", help="e.g. \"status = 'succeeded'\"")
@click.option("--order-by", metavar="KEY", help="e.g. 'metrics.val_loss ASC' (default: newest)")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--all", "all_pages", is_flag=True, help="follow the cursor through every page")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="same as --format json")
def runs_list(
    filter_: str | None,
    order_by: str | None,
    limit: int,
    all_pages: bool,
    fmt: str,
    as_json: bool,
) -> None:
    """List runs matching a filter (the filter language), newest first by default."""
    params: dict[str, Any] = {"limit": limit}
    if filter_:
        params["filter"] = filter_
    if order_by:
        params["order_by"] = order_by
    found = _fetch_runs(params, all_pages)
    fmt = "json" if as_json else fmt
    if fmt == "json":
        echo_json(found)
    elif fmt == "csv":
        click.echo(format_csv(found), nl=False)
    else:
        click.echo(format_table(found))


def _fetch_runs(params: dict[str, Any], all_pages: bool) -> list[dict[str, Any]]:
    """One page of runs, or every page when ``all_pages`` (following ``next_cursor``)."""
    client = current_client()
    found: list[dict[str, Any]] = []
    while True:
        answer = client.request("GET", f"{API}/runs", params=params)
        found += answer["runs"]
        cursor = answer.get("next_cursor")
        if not all_pages or not cursor:
            return found
        params = {**params, "cursor": cursor}


CSV_COLUMNS = (
    "id",
    "config",
    "version",
    "config_hash",
    "kind",
    "status",
    "attempt",
    "queue",
    "worker",
    "seed",
    "created_at",
    "started_at",
    "finished_at",
    "mlflow_run_id",
    "reproduces",
    "identical",
    "provenance_complete",
)


def format_csv(found: list[dict[str, Any]]) -> str:
    """Runs as CSV: the run's fields, then one ``metrics.NAME`` column per metric seen."""
    import csv
    import io

    metric_names = sorted({k for run in found for k in (run.get("metrics") or {})})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, *(f"metrics.{m}" for m in metric_names)])
    for run in found:
        metrics = run.get("metrics") or {}
        writer.writerow(
            [
                *("" if run.get(c) is None else run.get(c) for c in CSV_COLUMNS),
                *("" if metrics.get(m) is None else metrics[m] for m in metric_names),
            ]
        )
    return out.getvalue()


def format_table(found: list[dict[str, Any]]) -> str:
    """Runs as an aligned text table."""
    head = ["id", "config", "kind", "status", "att", "queue", "worker", "created", *LIST_METRICS]
    rows = [head]
    for run in found:
        metrics = run.get("metrics") or {}
        rows.append(
            [
                str(run["id"]),
                f"{run['config']}@{run['version']}",
                run["kind"],
                run["status"]
                + ("*" if run.get("cancel_requested") and run["status"] == "running" else ""),
                str(run["attempt"]),
                run["queue"],
                run.get("worker") or "-",
                (run.get("created_at") or "")[:19].replace("T", " "),
                *(_number(metrics.get(name)) for name in LIST_METRICS),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines) if found else "\n".join([*lines, "(no runs)"])


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


@runs.command("show")
@click.argument("run_id", type=int, metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="print the JSON answer")
def runs_show(run_id: int, as_json: bool) -> None:
    """Show one run: its state, metrics, provenance and error."""
    run = current_client().request("GET", f"{API}/runs/{run_id}")
    if as_json:
        echo_json(run)
        return
    click.echo(format_run(run))


def format_run(run: dict[str, Any]) -> str:
    """One run as readable lines."""
    lines = [
        f"run {run['id']}: {run['kind']} of {run['config']}@{run['version']} "
        f"-- {run['status']} (attempt {run['attempt']})"
    ]
    for key in (
        "config_hash",
        "queue",
        "priority",
        "seed",
        "worker",
        "mlflow_run_id",
        "reproduces",
        "from_run",
        "on_oom",
        "remedied_by",
        "created_at",
        "started_at",
        "finished_at",
    ):
        if run.get(key) is not None:
            lines.append(f"  {key}: {run[key]}")
    if run.get("progress") and run["status"] == "running":
        lines.append(f"  progress: {_inline(run['progress'])}")
    for section in ("metrics", "provenance"):
        values = run.get(section) or {}
        if values:
            lines.append(f"  {section}:")
            lines += [f"    {k}: {_number(v)}" for k, v in sorted(values.items())]
    if run.get("reproduction"):
        lines.append(f"  reproduction: {describe_reproduction(run['reproduction'])}")
    error = run.get("error")
    if error:
        lines.append(f"  error: {error.get('kind')}: {error.get('message')}")
        lines += [f"    remedy: {r}" for r in error.get("remedies") or []]
        lines += [f"    hint: {error['hint']}"] if error.get("hint") else []
    return "\n".join(lines)


def describe_reproduction(result: dict[str, Any]) -> str:
    """A re-run's verdict: identical, or the environment's differences and the tolerance."""
    if result.get("identical"):
        return "identical (same environment, same model metrics bit for bit)"
    differences = result.get("environment_differences") or {}
    where = (
        "same environment"
        if not differences
        else "another environment: "
        + ", ".join(f"{k} {v.get('original')} -> {v.get('rerun')}" for k, v in differences.items())
    )
    tolerance = result.get("tolerance") or {}
    if "relative" not in tolerance:  # stored before the tolerance was
        return f"{where}; metrics differ"
    verdict = "within" if result.get("within_tolerance") else "outside"
    outside = result.get("outside_tolerance") or []
    return (
        f"{where}; {verdict} the tolerance ({tolerance['relative']:.0%} relative, "
        f"{tolerance.get('absolute')} absolute)" + (f": {', '.join(outside)}" if outside else "")
    )


def _inline(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={_number(v)}" for k, v in values.items())


@runs.command("cancel")
@click.argument("run_id", type=int, metavar="ID")
def runs_cancel(run_id: int) -> None:
    """Cancel a run (a running one stops at its next heartbeat)."""
    run = current_client().request("POST", f"{API}/runs/{run_id}/cancel")
    state = "cancel requested" if run["status"] == "running" else run["status"]
    click.echo(f"run {run_id}: {state}")


@click.command()
@click.argument("run_id", type=int, metavar="ID")
def reproduce(run_id: int) -> None:
    """Queue an exact re-run of run ID: the same config version and seed."""
    run = current_client().request("POST", f"{API}/runs/{run_id}/reproduce")
    click.echo(
        f"queued run {run['id']} reproducing run {run_id} "
        f"({run['config']}@{run['version']}, seed {run['seed']})"
    )
