"""The ``registry`` command: one group, its commands grouped by area in this package.

Every ``RegistryError`` a command raises is printed as ``error: ...`` with its fields, and the
command exits 1 (``context.RegistryGroup``).
"""

from __future__ import annotations

import logging
import sys

import click

from registry.cli import configs, demo, runs, service, users
from registry.cli.context import RegistryGroup
from registry.settings import Settings


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
    try:
        settings = Settings.from_env()
    except ValueError as exc:  # a setting that cannot be read: say which, no traceback
        click.secho(f"error: {exc}", fg="red", err=True)
        ctx.exit(2)
    changes: dict[str, object] = {}
    if server:
        changes["server_url"] = server
    if token:
        changes["token"] = token
    ctx.obj = settings.with_(**changes) if changes else settings


for command in (
    service.db,
    service.token,
    service.serve,
    configs.submit,
    configs.export,
    runs.runs,
    runs.reproduce,
    demo.demo,
    users.user,
):
    main.add_command(command)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
