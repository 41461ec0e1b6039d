"""Sign-in and bearer-token throttling for the HTTP layer (the counters are the service's).

The client address is the peer's, or with ``REGISTRY_TRUSTED_PROXIES=N`` the address the
N-th proxy from us saw (``X-Forwarded-For``, read from the right; a client can prepend
anything, but not past the proxies we trust). Failures are recorded in a transaction of their
own, because the request's own transaction rolls back with its 401.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flask import g, request

from registry.db import transaction
from registry.http import context
from registry.http.clock import now
from registry.services import throttle
from registry.services.throttle import Counter, Rule, Throttled
from registry.settings import Settings


@dataclass(frozen=True)
class Rules:
    """The three throttling rules of one app's settings."""

    signin_account: Rule
    signin_address: Rule
    bearer_address: Rule

    @classmethod
    def of(cls, settings: Settings) -> Rules:
        """The rules ``settings`` ask for."""
        window = dt.timedelta(seconds=settings.signin_window_seconds)
        return cls(
            Rule("signin-account", settings.signin_failures, window),
            Rule("signin-address", settings.signin_address_failures, window),
            Rule("bearer-address", settings.bearer_failures, window),
        )


def rules() -> Rules:
    """The rules of the app handling this request."""
    return Rules.of(context.settings())


def client_address() -> str:
    """The address the request came from, past the trusted proxies."""
    hops = context.settings().trusted_proxies
    if hops:
        forwarded = [
            part.strip()
            for header in request.headers.getlist("X-Forwarded-For")
            for part in header.split(",")
            if part.strip()
        ]
        if len(forwarded) >= hops:
            return forwarded[-hops][:64]
    return request.remote_addr or "unknown"


def check(counters: list[Counter]) -> None:
    """Raise ``Throttled`` before any costly check when a counter is full."""
    throttle.check(g.db, counters, now())


def record_failure(counters: list[Counter]) -> None:
    """Count a failure on ``counters``, committed at once (the request itself will roll back)."""
    # Nothing of this request's is worth keeping after a failed sign-in; ending its transaction
    # also frees SQLite's write lock for the transaction below.
    g.db.rollback()
    with transaction(context.current().sessions) as session:
        throttle.record_failure(session, counters, now())


def retry_after(err: Throttled) -> dict[str, str]:
    """The ``Retry-After`` header for a throttled answer."""
    return {"Retry-After": str(err.retry_after)}
