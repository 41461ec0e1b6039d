"""The service side of ``registry``: ``db upgrade``, ``token create|revoke``, ``serve``."""

from __future__ import annotations

from typing import Any

import click
from gunicorn.app.base import BaseApplication

from registry.cli.context import current_settings
from registry.models import ROLES
from registry.settings import Settings, secret_key_problem


@click.group()
def db() -> None:
    """The database (DATABASE_URL)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply the migrations (creates the SQLite file and its folder)."""
    from alembic import command
    from sqlalchemy.engine import make_url

    url = current_settings().database_url
    from registry.migrations import alembic_config

    command.upgrade(alembic_config(url), revision)
    click.echo(f"database {make_url(url).render_as_string(hide_password=True)} is at {revision}")


@click.group()
def token() -> None:
    """API tokens."""


@token.command("create")
@click.option("--name", required=True, help="who or what the token is for")
@click.option("--role", required=True, type=click.Choice(ROLES))
def token_create(name: str, role: str) -> None:
    """Create a token; it is printed once, alone on the last line."""
    from registry.db import transaction_at
    from registry.services.auth import create_token

    with transaction_at(current_settings().database_url) as session:
        secret = create_token(session, name, role)
    click.echo(f"created a {role} token named {name!r}; it is not shown again:")
    click.echo(secret)


@token.command("revoke")
@click.argument("name")
def token_revoke(name: str) -> None:
    """Revoke every live token named NAME and end its web sessions, from the next request on."""
    from registry.db import transaction_at
    from registry.services.auth import revoke_tokens

    with transaction_at(current_settings().database_url) as session:
        ids = revoke_tokens(session, name)
    listed = ", ".join(str(i) for i in ids)
    click.echo(f"revoked {len(ids)} token(s) named {name!r} (id {listed}) and their web sessions")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 64))
def serve(host: str, port: int, workers: int, threads: int) -> None:
    """Serve the web UI and the API with gunicorn (behind nginx in production: docs/deploy.md).

    Exits 2 without serving when REGISTRY_SECRET_KEY is unset, weak or a shipped default.
    Each worker process reaps expired leases every REGISTRY_REAP_INTERVAL seconds (default 3).
    """
    settings = current_settings()
    problem = secret_key_problem(settings.secret_key)
    if problem is not None:
        click.secho(f"error: {problem}", fg="red", err=True)
        click.get_current_context().exit(2)
    if not _is_loopback(host):
        click.echo(
            f"warning: serving on {host} directly; slow clients can hold every gunicorn thread. "
            "Put the buffering proxy of deploy/ in front (docs/deploy.md).",
            err=True,
        )
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    options = {
        "bind": bind,
        "workers": workers,
        "threads": threads,
        "worker_class": "registry.cli.serving.JsonErrorThreadWorker",
        "timeout": 60,
        "graceful_timeout": 10,
        "accesslog": "-",
        "errorlog": "-",
        "proc_name": "registry",
    }
    GunicornServer(settings, options).run()


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class GunicornServer(BaseApplication):  # type: ignore[misc]
    """gunicorn serving create_app(settings); each worker builds its own app and engine."""

    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        """The app of one gunicorn worker (called after the fork), with its reaper thread."""
        from registry.http import context
        from registry.http.app import create_app
        from registry.services.reaper import Reaper

        app = create_app(self.settings)
        if self.settings.reap_interval > 0:
            sessions, interval = context.of(app).sessions, self.settings.reap_interval
            Reaper(sessions, interval, self.settings.mlflow_tracking_uri).start()
        return app
