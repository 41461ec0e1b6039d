"""Server-side web sessions: the cookie carries a random secret; only its sha256 is stored.

A session is live while its row is not ended and not expired, and its token or user is still
allowed in (the caller checks that). Signing out ends the row; a password change, a revoked
token or a disabled user end every row it opened, so a copied cookie stops working on the
next request. Time is a parameter (``now``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from registry.models import WebSession

#: Rows ended or expired longer ago than this are deleted when someone signs in.
_KEEP_ENDED = dt.timedelta(days=1)
#: How stale ``last_seen_at`` may get, so that reads do not all become writes.
_TOUCH_EVERY = dt.timedelta(minutes=1)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def open_session(
    session: Session,
    *,
    now: dt.datetime,
    lifetime: dt.timedelta,
    token_id: int | None = None,
    user_id: int | None = None,
) -> str:
    """Store a new session for a token or a user; return its secret (for the cookie only)."""
    if (token_id is None) == (user_id is None):
        raise ValueError("a web session belongs to exactly one token or one user")
    _purge(session, now)
    secret = secrets.token_urlsafe(32)
    session.add(
        WebSession(
            secret_hash=_hash(secret),
            token_id=token_id,
            user_id=user_id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + lifetime,
        )
    )
    session.flush()
    return secret


def live_session(
    session: Session, secret: str, now: dt.datetime, *, record_use: bool = True
) -> WebSession | None:
    """The session row for ``secret`` if it is neither ended nor expired at ``now``; its
    ``last_seen_at`` is kept (when ``seen_is_due``) unless ``record_use`` is False: a
    read-only session leaves that to :func:`record_seen` in a transaction of its own."""
    row = session.scalar(select(WebSession).where(WebSession.secret_hash == _hash(secret)))
    if row is None or row.ended_at is not None or row.expires_at <= now:
        return None
    if record_use and seen_is_due(row, now):
        row.last_seen_at = now
    return row


def seen_is_due(row: WebSession, now: dt.datetime) -> bool:
    """Whether a request at ``now`` should update ``row.last_seen_at`` (not every one does)."""
    return row.last_seen_at is None or now - row.last_seen_at > _TOUCH_EVERY


def record_seen(session: Session, row_id: int, now: dt.datetime) -> None:
    """Set ``last_seen_at`` of web session ``row_id`` to ``now``."""
    session.execute(update(WebSession).where(WebSession.id == row_id).values(last_seen_at=now))


def end_session(session: Session, secret: str, now: dt.datetime) -> None:
    """End the session of ``secret`` (signing out); nothing when it is unknown or ended."""
    session.execute(
        update(WebSession)
        .where(WebSession.secret_hash == _hash(secret), WebSession.ended_at.is_(None))
        .values(ended_at=now)
    )
    session.flush()


def end_sessions_of(
    session: Session,
    now: dt.datetime,
    *,
    token_ids: list[int] | None = None,
    user_ids: list[int] | None = None,
) -> int:
    """End every live session these tokens or users opened; return how many were ended."""
    owners = []
    if token_ids:
        owners.append(WebSession.token_id.in_(token_ids))
    if user_ids:
        owners.append(WebSession.user_id.in_(user_ids))
    if not owners:
        return 0
    result = session.execute(
        update(WebSession)
        .where(or_(*owners), WebSession.ended_at.is_(None))
        .values(ended_at=now)
        .execution_options(synchronize_session=False)
    )
    session.flush()
    return int(getattr(result, "rowcount", 0) or 0)


def _purge(session: Session, now: dt.datetime) -> None:
    cutoff = now - _KEEP_ENDED
    session.execute(
        delete(WebSession).where(
            or_(WebSession.expires_at <= cutoff, WebSession.ended_at <= cutoff)
        )
    )
