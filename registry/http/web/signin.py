"""Who is signed in: the session names a token or a user by id, re-checked on each request."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import abort, g, redirect, request, session, url_for

from registry.models import Token
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
    """Start a fresh session for a token or user (a new session id: no fixation)."""
    session.clear()
    session["who"] = {"kind": kind, "id": ident}
    session.permanent = True


def sign_out() -> None:
    """Forget who is signed in."""
    session.clear()


def current_viewer() -> Viewer | None:
    """The signed-in viewer, loaded once per request; None when nobody (or revoked)."""
    if "viewer" in g:
        return g.viewer  # type: ignore[no-any-return]
    g.viewer = _load(session.get("who"))
    return g.viewer  # type: ignore[no-any-return]


def _load(who: Any) -> Viewer | None:
    if not isinstance(who, dict) or not isinstance(who.get("id"), int):
        return None
    if who.get("kind") == "token":
        token = g.db.get(Token, who["id"])
        if token is None or token.revoked_at is not None or token.role not in WEB_ROLES:
            return None
        return Viewer("token", token.id, token.name, token.role)
    if who.get("kind") == "user":
        user = get_active_user(g.db, who["id"])
        return Viewer("user", user.id, user.name, user.role) if user else None
    return None


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
