"""API tokens (only a sha256 stored), roles, and the decorator the views use."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from registry.db import utcnow
from registry.errors import BadRequest, Forbidden, NotFound, Unauthorized
from registry.models import ROLES, Token
from registry.services.websessions import end_sessions_of

#: What each role may do, by capability.
#: ``catalog`` (what the service offers: the built-in datasets) is every role's (CONTRACT 5.4).
CAPABILITIES: dict[str, frozenset[str]] = {
    "admin": frozenset({"catalog", "read", "write", "work", "admin"}),
    "submitter": frozenset({"catalog", "read", "write"}),
    "viewer": frozenset({"catalog", "read"}),
    "worker": frozenset({"catalog", "work"}),
}
TOKEN_PREFIX = "cr_"


def hash_token(secret: str) -> str:
    """The sha256 hex digest that is stored in place of the token."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_token(session: Session, name: str, role: str) -> str:
    """Store a new token for ``role`` and return its secret (shown once, never stored)."""
    if role not in ROLES:
        raise BadRequest(f"role must be one of {', '.join(ROLES)}; got {role!r}", field="role")
    if not name or len(name) > 200:
        raise BadRequest("name must be 1-200 characters", field="name")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(Token(name=name, role=role, token_hash=hash_token(secret)))
    session.flush()
    return secret


def authenticate(session: Session, secret: str | None, *, record_use: bool = True) -> Token:
    """The live token for ``secret``; 401 when missing, unknown or revoked. Its use is recorded
    (``last_used_at``, at most once a minute) unless ``record_use`` is False: a read-only
    session leaves that to :func:`record_use` in a transaction of its own."""
    if not secret:
        raise Unauthorized("send Authorization: Bearer <token>")
    token = session.scalar(select(Token).where(Token.token_hash == hash_token(secret)))
    if token is None or token.revoked_at is not None:
        raise Unauthorized("the token is unknown or revoked")
    now = utcnow()
    if record_use and use_is_due(token, now):
        token.last_used_at = now
    return token


def use_is_due(token: Token, now: dt.datetime) -> bool:
    """Whether a use of ``token`` at ``now`` should be recorded (throttled so that reads do not
    all become writes)."""
    return token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60


def record_use(session: Session, token_id: int, now: dt.datetime) -> None:
    """Set ``last_used_at`` of token ``token_id`` to ``now``."""
    session.execute(update(Token).where(Token.id == token_id).values(last_used_at=now))


def revoke_tokens(session: Session, name: str, now: dt.datetime | None = None) -> list[int]:
    """Revoke every live token named ``name`` and end its web sessions; return their ids."""
    now = now or utcnow()
    tokens = session.scalars(
        select(Token).where(Token.name == name, Token.revoked_at.is_(None)).order_by(Token.id)
    ).all()
    if not tokens:
        raise NotFound(f"no live token named {name!r}", field="name")
    for token in tokens:
        token.revoked_at = now
    ids = [token.id for token in tokens]
    end_sessions_of(session, now, token_ids=ids)
    session.flush()
    return ids


def check_capability(token: Token, capability: str) -> None:
    """403 unless ``token``'s role grants ``capability``."""
    if capability not in CAPABILITIES.get(token.role, frozenset()):
        raise Forbidden(f"role {token.role!r} may not {capability}")


def bearer(header: str | None) -> str | None:
    """The token in an ``Authorization: Bearer`` header, if any."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None
