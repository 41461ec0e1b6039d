"""``registry runs list|show|cancel``, ``registry reproduce`` and ``registry demo``.

Registered on the ``registry`` group by ``registry.cli`` (``register(group)``), which this
module imports only inside its commands: ``registry.cli`` imports this module while it loads.
"""

from __future__ import annotations

import secrets
import sys
import time
from pathlib import Path
from typing import Any

import click

from registry.client import API

#: Metrics shown as columns by ``runs list``.
LIST_METRICS = ("train_loss", "val_loss", "val_accuracy")
DEMO_PRESET = "tiny-cpu"
DEMO_CONFIG = "demo-tiny-cpu"


def current_client() -> Any:
    """The command's client (REGISTRY_URL, REGISTRY_TOKEN, --server, --token)."""
    from registry import cli

    return cli.current_client()


def echo_json(data: Any) -> None:
    from registry import cli

    cli.echo_json(data)


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
    return "\n".join(lines) if found else "\n".join(lines + ["(no runs)"])


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
    error = run.get("error")
    if error:
        lines.append(f"  error: {error.get('kind')}: {error.get('message')}")
        lines += [f"    remedy: {r}" for r in error.get("remedies") or []]
    return "\n".join(lines)


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


@click.command()
@click.option(
    "--timeout", type=float, default=600, show_default=True, help="seconds to wait for the run"
)
def demo(timeout: float) -> None:
    """End to end on the embedded default: train the tiny-cpu preset with one local worker."""
    from alembic import command

    from registry.cli import alembic_config, current_settings
    from registry.devstack import make_tokens

    settings = current_settings()
    var = Path("var")
    var.mkdir(exist_ok=True)
    click.echo("1/5 migrating the database ...")
    command.upgrade(alembic_config(settings.database_url), "head")
    admin, worker_token = make_tokens(settings, f"demo-{secrets.token_hex(3)}")
    click.echo("2/5 starting the service ...")
    with _service(settings, var) as url:
        run = _queue_demo_run(url, admin)
        click.echo(f"4/5 training run {run['id']} with one local worker (a minute or so) ...")
        _work_once(settings, url, worker_token, run["queue"], var, timeout)
        final = _client(url, admin).request("GET", f"{API}/runs/{run['id']}")
    click.echo("5/5 done\n")
    click.echo(format_run(final))
    _where_to_look(settings, final)
    if final["status"] != "succeeded":
        raise SystemExit(1)


class _service:
    """``registry serve`` on a free port for the demo's lifetime; yields its URL."""

    def __init__(self, settings: Any, var: Path) -> None:
        self.settings, self.var = settings, var

    def __enter__(self) -> str:
        from registry.devstack import BIN, child_env, free_port, spawn, wait_healthy

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        args = [str(BIN / "registry"), "serve", "--port", str(port), "--workers", "1"]
        self.child = spawn(
            "registry serve", args, child_env(self.settings, url), self.var / "demo-service.log"
        )
        try:
            wait_healthy(self.child, f"{url}/api/v1/health", 60)
        except BaseException:
            self.child.stop()
            raise
        return url

    def __exit__(self, *_exc: object) -> None:
        self.child.stop()


def _client(url: str, token: str) -> Any:
    from registry.client import Client

    return click.get_current_context().with_resource(Client(url, token))


def _queue_demo_run(url: str, admin: str) -> dict[str, Any]:
    """Register the preset as a config (or a new version of it) and queue a train run."""
    client = _client(url, admin)
    preset = client.request("GET", f"{API}/presets/{DEMO_PRESET}")
    stored = client.submit(DEMO_CONFIG, preset, message=f"the {DEMO_PRESET} preset")
    click.echo(
        f"3/5 registered {DEMO_CONFIG} version {stored['version']} (hash {stored['hash'][:12]})"
    )
    # A queue of its own, so the demo's worker takes this run and nothing else.
    body = {
        "config": DEMO_CONFIG,
        "version": stored["version"],
        "kind": "train",
        "queue": f"demo-{secrets.token_hex(4)}",
    }
    return client.request("POST", f"{API}/runs", json=body)  # type: ignore[no-any-return]


def _work_once(settings: Any, url: str, token: str, queue: str, var: Path, timeout: float) -> None:
    """One ``registry-worker --once`` on the demo's queue; its log shows on this terminal."""
    from registry.devstack import BIN, child_env, spawn

    args = [
        str(BIN / "registry-worker"),
        "--once",
        "--queue",
        queue,
        "--state-dir",
        str(var / "demo-worker"),
    ]
    worker = spawn("registry-worker", args, child_env(settings, url, token), None)
    deadline = time.monotonic() + timeout
    try:
        while worker.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        worker.stop()
    if worker.popen.returncode not in (0, -15):
        click.echo(f"the worker exited with status {worker.popen.returncode}", err=True)


def _where_to_look(settings: Any, run: dict[str, Any]) -> None:
    from registry.devstack import mlflow_store_path, mlflow_ui_command

    ui = " ".join(mlflow_ui_command(settings))
    click.echo(f"""
where to look:
  MLflow run id:   {run.get("mlflow_run_id")}  (experiment {run["config"]!r})
  MLflow store:    {mlflow_store_path(settings.mlflow_tracking_uri)}
  open its UI:     {ui}
                   then http://127.0.0.1:5001/
  this run again:  registry runs show {run["id"]}   (with the service up: make run)""")
    sys.stdout.flush()


def register(group: click.Group) -> None:
    """Add the run commands to the ``registry`` group."""
    group.add_command(runs)
    group.add_command(reproduce)
    group.add_command(demo)
