"""The ``registry`` command: thin over the services (db, token, serve) and the client.

Other modules add commands without touching this one: a module named in ``EXTENSIONS``
defines ``register(group: click.Group) -> None`` and may use ``current_settings()``,
``current_client()`` and ``echo_json()`` from here. Every ``RegistryError`` a command raises
is printed as ``error: ...`` with its fields, and the command exits 1.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

import click
from gunicorn.app.base import BaseApplication

from registry.errors import RegistryError, Unauthorized
from registry.models import ROLES
from registry.settings import Settings

log = logging.getLogger(__name__)

#: Modules that add commands to ``registry`` (each with ``register(group)``), if installed.
EXTENSIONS = ("registry.cli_runs", "registry.cli_users")
ROOT = Path(__file__).resolve().parent.parent


class RegistryGroup(click.Group):
    """A click group that reports RegistryError as a one-line message and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RegistryError as err:
            _report(err)
            ctx.exit(1)


def _report(err: RegistryError) -> None:
    click.secho(f"error: {err.message}", fg="red", err=True)
    for issue in err.extra.get("errors") or []:
        if isinstance(issue, dict):
            click.echo(f"  {issue.get('field')}: {issue.get('message')}", err=True)
    if isinstance(err, Unauthorized):
        click.echo("  (set REGISTRY_TOKEN to a token: registry token create)", err=True)


def current_settings() -> Settings:
    """The settings of this invocation (the environment, with the global options applied)."""
    ctx = click.get_current_context()
    settings = ctx.find_object(Settings)
    return settings if settings is not None else Settings.from_env()


def current_client() -> Any:
    """A registry.client.Client for REGISTRY_URL and REGISTRY_TOKEN, closed with the command."""
    from registry.client import Client

    ctx = click.get_current_context()
    return ctx.with_resource(Client.from_settings(current_settings()))


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


@click.group(cls=RegistryGroup)
@click.option("--server", metavar="URL", help="the registry server (default $REGISTRY_URL)")
@click.option("--token", metavar="T", help="the API token (default $REGISTRY_TOKEN)")
@click.option("-v", "--verbose", is_flag=True, help="log more")
@click.version_option(package_name="config-registry")
@click.pass_context
def main(ctx: click.Context, server: str | None, token: str | None, verbose: bool) -> None:
    """config-registry: typed, hash-versioned transformer configs and their runs."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    settings = Settings.from_env()
    changes: dict[str, object] = {}
    if server:
        changes["server_url"] = server
    if token:
        changes["token"] = token
    ctx.obj = settings.with_(**changes) if changes else settings


# -- the service side ----------------------------------------------------------------------


@main.group()
def db() -> None:
    """The database (DATABASE_URL)."""


def alembic_config(url: str) -> Any:
    """The Alembic config of this project's migrations for database ``url``."""
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["database_url"] = url
    cfg.attributes["configure_logger"] = False
    return cfg


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply the migrations (creates the SQLite file and its folder)."""
    from alembic import command
    from sqlalchemy.engine import make_url

    url = current_settings().database_url
    command.upgrade(alembic_config(url), revision)
    click.echo(f"database {make_url(url).render_as_string(hide_password=True)} is at {revision}")


@main.group()
def token() -> None:
    """API tokens."""


@token.command("create")
@click.option("--name", required=True, help="who or what the token is for")
@click.option("--role", required=True, type=click.Choice(ROLES))
def token_create(name: str, role: str) -> None:
    """Create a token; it is printed once, alone on the last line."""
    from registry.auth import create_token
    from registry.db import make_engine, make_session_factory, transaction

    engine = make_engine(current_settings().database_url)
    try:
        with transaction(make_session_factory(engine)) as session:
            secret = create_token(session, name, role)
    finally:
        engine.dispose()
    click.echo(f"created a {role} token named {name!r}; it is not shown again:")
    click.echo(secret)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 64))
def serve(host: str, port: int, workers: int, threads: int) -> None:
    """Serve the web UI and the API with gunicorn."""
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    options = {
        "bind": bind,
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "timeout": 60,
        "graceful_timeout": 10,
        "accesslog": "-",
        "errorlog": "-",
        "proc_name": "registry",
    }
    GunicornServer(current_settings(), options).run()


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
        from registry.app import create_app

        return create_app(self.settings)


# -- the client side -----------------------------------------------------------------------


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="the config's name")
@click.option("--message", "-m", help="what changed")
@click.option("--description", help="the config's description (when it is new)")
@click.option("--enqueue", type=click.Choice(["train", "evaluate"]), help="also queue a run of it")
def submit(
    file: Path, name: str, message: str | None, description: str | None, enqueue: str | None
) -> None:
    """Register FILE (YAML or JSON) as the next version of config NAME."""
    from registry.spec import parse_document

    fmt = "json" if file.suffix.lower() == ".json" else "yaml"
    document = parse_document(file.read_text(encoding="utf-8"), fmt)
    client = current_client()
    try:
        answer = client.create_config(name, document, description=description, message=message)
    except RegistryError as err:
        if err.code != "conflict":
            raise
        answer = client.add_version(name, document, message=message)
    state = "created" if answer["created"] else "unchanged: the same document is stored"
    click.echo(f"{answer['name']} version {answer['version']} ({state})")
    click.echo(f"hash {answer['hash']}")
    for warning in answer.get("warnings") or []:
        click.echo(f"warning: {warning['field']}: {warning['message']}")
    if enqueue:
        run = client.request(
            "POST",
            "/api/v1/runs",
            json={"config": answer["name"], "version": answer["version"], "kind": enqueue},
        )
        click.echo(f"queued {enqueue} run {run.get('id')} ({run.get('status', 'queued')})")


@main.command()
@click.argument("ref", metavar="NAME[@VERSION]")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml")
def export(ref: str, fmt: str) -> None:
    """Print a config version (default: the latest) as YAML or JSON."""
    name, _, version = ref.partition("@")
    text = current_client().export(name, version or "latest", fmt)
    click.echo(text, nl=not text.endswith("\n"))


def _load_extensions(group: click.Group) -> None:
    for module_name in EXTENSIONS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        module.register(group)


_load_extensions(main)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
