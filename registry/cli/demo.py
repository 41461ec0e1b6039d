"""``registry demo``: end to end on the embedded default, then exit."""

from __future__ import annotations

import secrets
import sys
import time
from pathlib import Path
from typing import Any

import click

from registry.cli.context import current_settings
from registry.cli.runs import format_run
from registry.client import API

DEMO_PRESET = "tiny-cpu"
DEMO_CONFIG = "demo-tiny-cpu"


@click.command()
@click.option(
    "--timeout", type=float, default=600, show_default=True, help="seconds to wait for the run"
)
def demo(timeout: float) -> None:
    """End to end on the embedded default: train the tiny-cpu preset with one local worker."""
    from alembic import command

    from registry.cli.devstack import make_tokens, service_secret
    from registry.migrations import alembic_config

    settings = current_settings()
    var = Path("var")
    var.mkdir(exist_ok=True)
    try:
        secret = service_secret(settings, var)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("1/5 migrating the database ...")
    command.upgrade(alembic_config(settings.database_url), "head")
    admin, worker_token = make_tokens(settings, f"demo-{secrets.token_hex(3)}")
    click.echo("2/5 starting the service ...")
    with _service(settings, var, secret) as url:
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

    def __init__(self, settings: Any, var: Path, secret: str) -> None:
        self.settings, self.var, self.secret = settings, var, secret

    def __enter__(self) -> str:
        from registry.cli.devstack import BIN, SECRET_ENV, child_env, free_port, spawn, wait_healthy

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        args = [str(BIN / "registry"), "serve", "--port", str(port), "--workers", "1"]
        env = {**child_env(self.settings, url), SECRET_ENV: self.secret}
        self.child = spawn("registry serve", args, env, self.var / "demo-service.log")
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
    from registry.cli.devstack import BIN, child_env, spawn

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
    from registry.cli.devstack import mlflow_store_path, mlflow_ui_command

    ui = " ".join(mlflow_ui_command(settings))
    click.echo(f"""
where to look:
  MLflow run id:   {run.get("mlflow_run_id")}  (experiment {run["config"]!r})
  MLflow store:    {mlflow_store_path(settings.mlflow_tracking_uri)}
  open its UI:     {ui}
                   then http://127.0.0.1:5001/
  this run again:  registry runs show {run["id"]}   (with the service up: make run)""")
    sys.stdout.flush()
