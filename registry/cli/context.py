"""What every ``registry`` command shares: the settings, the client, JSON output, error reports."""

from __future__ import annotations

import json
from typing import Any

import click

from registry.errors import RegistryError, Unauthorized
from registry.settings import Settings


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
