"""Web users: a name, a role and a scrypt password hash (services.passwords), never the password."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.db import utcnow
from registry.errors import BadRequest, Conflict, NotFound, Unauthorized
from registry.models import ROLES, User
from registry.services.passwords import check_password, hash_password
from registry.services.websessions import end_sessions_of

MIN_PASSWORD = 8
#: Checked against when the name is unknown, so both failures take the same time.
_DUMMY_HASH = hash_password("not-a-real-password")


def create_user(session: Session, name: str, role: str, password: str) -> User:
    """Store a new user with a hashed password; Conflict when the name is taken."""
    if role not in ROLES or role == "worker":
        raise BadRequest("role must be admin, submitter or viewer", field="role")
    if not name or len(name) > 200 or not name.isprintable():
        raise BadRequest("name must be 1-200 printable characters", field="name")
    if len(password) < MIN_PASSWORD:
        raise BadRequest(f"a password has at least {MIN_PASSWORD} characters", field="password")
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise Conflict(f"user {name!r} already exists")
    user = User(name=name, role=role, password_hash=hash_password(password))
    session.add(user)
    session.flush()
    return user


def authenticate_user(session: Session, name: str, password: str) -> User:
    """The enabled user ``name`` when ``password`` is theirs; Unauthorized otherwise."""
    user = session.scalar(select(User).where(User.name == name)) if name else None
    if user is None:
        check_password(_DUMMY_HASH, password)
        raise Unauthorized("unknown user or wrong password")
    if not check_password(user.password_hash, password) or user.disabled_at is not None:
        raise Unauthorized("unknown user or wrong password")
    user.last_login_at = utcnow()
    return user


def get_active_user(session: Session, user_id: int) -> User | None:
    """The user with ``user_id`` unless it was removed or disabled."""
    user = session.get(User, user_id)
    return user if user is not None and user.disabled_at is None else None


def set_password(
    session: Session, name: str, password: str, now: dt.datetime | None = None
) -> User:
    """Replace ``name``'s password and end every web session the old one opened."""
    if len(password) < MIN_PASSWORD:
        raise BadRequest(f"a password has at least {MIN_PASSWORD} characters", field="password")
    user = _named(session, name)
    user.password_hash = hash_password(password)
    end_sessions_of(session, now or utcnow(), user_ids=[user.id])
    session.flush()
    return user


def set_disabled(
    session: Session, name: str, disabled: bool = True, now: dt.datetime | None = None
) -> User:
    """Disable ``name`` (refused from the next request on, every web session ended) or enable."""
    user = _named(session, name)
    now = now or utcnow()
    if disabled:
        user.disabled_at = user.disabled_at or now
        end_sessions_of(session, now, user_ids=[user.id])
    else:
        user.disabled_at = None
    session.flush()
    return user


def _named(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFound(f"no user {name!r}", field="name")
    return user
