"""Web users: hashed passwords, sign-in checks, and the ``registry user`` commands."""

from __future__ import annotations

import datetime as dt

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.cli.users import user as user_command
from registry.db import utcnow
from registry.errors import BadRequest, Conflict, NotFound, Unauthorized
from registry.models import User
from registry.services import websessions
from registry.services.users import (
    authenticate_user,
    create_user,
    get_active_user,
    set_disabled,
    set_password,
)


def test_password_is_hashed_and_checked(session: Session) -> None:
    user = create_user(session, "ada", "submitter", "correct horse")
    assert "correct horse" not in user.password_hash
    assert user.password_hash.startswith(("scrypt:", "pbkdf2:"))
    assert authenticate_user(session, "ada", "correct horse").id == user.id
    for name, password in (("ada", "wrong horse"), ("bob", "correct horse"), ("", "")):
        with pytest.raises(Unauthorized):
            authenticate_user(session, name, password)


def test_bad_users_are_refused(session: Session) -> None:
    create_user(session, "ada", "viewer", "long enough")
    with pytest.raises(Conflict):
        create_user(session, "ada", "viewer", "long enough")
    with pytest.raises(BadRequest):
        create_user(session, "short", "viewer", "short")
    with pytest.raises(BadRequest):
        create_user(session, "w", "worker", "long enough")


def test_user_create_command(db_url: str, engine: object, session: Session) -> None:
    group = click.Group()
    group.add_command(user_command)
    answer = CliRunner().invoke(
        group,
        ["user", "create", "--name", "cli-user", "--role", "viewer"],
        env={"DATABASE_URL": db_url, "REGISTRY_NEW_PASSWORD": "from the env"},
    )
    assert answer.exit_code == 0, answer.output
    user = session.scalar(select(User).where(User.name == "cli-user"))
    assert user is not None and user.role == "viewer"
    assert authenticate_user(session, "cli-user", "from the env").id == user.id


def test_password_change_and_disable_end_sessions(session: Session) -> None:
    now, hour = utcnow(), dt.timedelta(hours=1)
    ada = create_user(session, "ada", "viewer", "long enough")

    def opened() -> str:
        return websessions.open_session(session, now=now, lifetime=hour, user_id=ada.id)

    first = opened()
    set_password(session, "ada", "another long one", now)
    assert websessions.live_session(session, first, now) is None
    second = opened()
    assert websessions.live_session(session, second, now) is not None
    set_disabled(session, "ada", now=now)
    assert websessions.live_session(session, second, now) is None
    assert get_active_user(session, ada.id) is None
    with pytest.raises(Unauthorized):
        authenticate_user(session, "ada", "another long one")
    set_disabled(session, "ada", disabled=False)
    assert authenticate_user(session, "ada", "another long one").id == ada.id
    with pytest.raises(NotFound):
        set_disabled(session, "nobody")
