"""Who is signed in: the cookie holds a web session's secret; its row, token and user are
re-checked on each request, so sign-out, a password change, a revoked token or a disabled
user end the session from the next request on (``registry.services.websessions``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import abort, current_app, g, redirect, request, session, url_for

from registry.db import is_reading, transaction
from registry.http import context
from registry.http.clock import now
from registry.models import Token
from registry.services import websessions
from registry.services.auth import CAPABILITIES
from registry.services.users import get_active_user

F = TypeVar("F", bound=Callable[..., Any])
#: Roles that may use the web UI (a worker token only claims and reports).
WEB_ROLES = ("admin", "submitter", "viewer")


@dataclass(frozen=True)
class Viewer:
    """The person behind this request."""

    kind: str  # "token" or "user"
    id: int
    name: str
    role: str

    def can(self, capability: str) -> bool:
        """Whether this viewer's role grants ``capability`` (read/write/work/admin)."""
        return capability in CAPABILITIES.get(self.role, frozenset())


def sign_in(kind: str, ident: int) -> None:
    """Start a fresh session for a token or user (a new secret and cookie: no fixation)."""
    end_current_session()
    session.clear()
    owner = {"token_id": ident} if kind == "token" else {"user_id": ident}
    secret = websessions.open_session(
        g.db, now=now(), lifetime=current_app.permanent_session_lifetime, **owner
    )
    session["sid"] = secret
    session.permanent = True
    g.pop("viewer", None)


def sign_out() -> None:
    """End this browser's session (the row too: a copied cookie stops working)."""
    end_current_session()
    session.clear()
    g.viewer = None


def end_current_session() -> None:
    """End the session row the cookie names, if any."""
    secret = session.get("sid")
    if isinstance(secret, str):
        websessions.end_session(g.db, secret, now())


def current_viewer() -> Viewer | None:
    """The signed-in viewer, loaded once per request; None when nobody (or no longer allowed)."""
    if "viewer" in g:
        return g.viewer  # type: ignore[no-any-return]
    g.viewer = _load(session.get("sid"))
    return g.viewer  # type: ignore[no-any-return]


def _load(secret: Any) -> Viewer | None:
    if not isinstance(secret, str):
        return None
    reads = is_reading(g.db)  # a GET: its session cannot write, the use is kept apart
    row = websessions.live_session(g.db, secret, now(), record_use=not reads)
    if row is None:
        return None
    if reads and websessions.seen_is_due(row, now()):
        with transaction(context.current().sessions) as session:
            websessions.record_seen(session, row.id, now())
    if row.token_id is not None:
        token = g.db.get(Token, row.token_id)
        if token is None or token.revoked_at is not None or token.role not in WEB_ROLES:
            return None
        return Viewer("token", token.id, token.name, token.role)
    user = get_active_user(g.db, row.user_id) if row.user_id is not None else None
    return Viewer("user", user.id, user.name, user.role) if user else None


def safe_next(target: str | None) -> str | None:
    """``target`` if it is a path on this site (never another host), else None."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc and "\\" not in target else None


def requires(capability: str = "read") -> Callable[[F], F]:
    """Signed-in viewers whose role grants ``capability``; others go to the sign-in page."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            viewer = current_viewer()
            if viewer is None:
                return redirect(url_for("web.login", next=request.full_path.rstrip("?")))
            if not viewer.can(capability):
                abort(403, f"your role ({viewer.role}) may not {capability}")
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
