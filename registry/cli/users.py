"""``registry user create|password|disable|enable``: web users."""

from __future__ import annotations

import click


@click.group()
def user() -> None:
    """Web UI users (name and password)."""


def _password() -> str:
    return str(click.prompt("password", hide_input=True, confirmation_prompt=True))


@user.command("create")
@click.option("--name", required=True, help="the user's sign-in name")
@click.option("--role", required=True, type=click.Choice(["admin", "submitter", "viewer"]))
@click.option("--password", envvar="REGISTRY_NEW_PASSWORD", help="default: prompt (or env)")
def user_create(name: str, role: str, password: str | None) -> None:
    """Create a web user; the password is prompted for unless given."""
    from registry.cli.context import current_settings
    from registry.db import transaction_at
    from registry.services.users import create_user

    password = password or _password()
    with transaction_at(current_settings().database_url) as session:
        create_user(session, name, role, password)
    click.echo(f"created {role} user {name!r}")


@user.command("password")
@click.option("--name", required=True)
@click.option("--password", envvar="REGISTRY_NEW_PASSWORD", help="default: prompt (or env)")
def user_password(name: str, password: str | None) -> None:
    """Set a web user's password."""
    from registry.cli.context import current_settings
    from registry.db import transaction_at
    from registry.services.users import set_password

    password = password or _password()
    with transaction_at(current_settings().database_url) as session:
        set_password(session, name, password)
    click.echo(f"password of {name!r} changed")


@user.command("disable")
@click.argument("name")
def user_disable(name: str) -> None:
    """Refuse NAME from the next request on and end every web session they opened."""
    _set_disabled(name, True)
    click.echo(f"user {name!r} disabled; their web sessions are ended")


@user.command("enable")
@click.argument("name")
def user_enable(name: str) -> None:
    """Let a disabled user sign in again."""
    _set_disabled(name, False)
    click.echo(f"user {name!r} enabled")


def _set_disabled(name: str, disabled: bool) -> None:
    from registry.cli.context import current_settings
    from registry.db import transaction_at
    from registry.services.users import set_disabled

    with transaction_at(current_settings().database_url) as session:
        set_disabled(session, name, disabled)
