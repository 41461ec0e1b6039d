"""The decorator every API view uses to authenticate and authorise its caller."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import g, request

from registry.db import is_reading, transaction, utcnow
from registry.errors import Unauthorized
from registry.http import context, throttling
from registry.models import Token
from registry.services.auth import (
    authenticate,
    bearer,
    check_capability,
    record_use,
    use_is_due,
)

F = TypeVar("F", bound=Callable[..., Any])


def requires(capability: str) -> Callable[[F], F]:
    """Allow the view only to tokens whose role grants ``capability`` (read/write/work/admin)."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = _authenticated()  # Throttled: the app's one handler answers 429
            check_capability(token, capability)
            g.token = token
            return view(*args, **kwargs)

        wrapper.required_capability = capability  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def _authenticated() -> Token:
    """The caller's live token; a bad one is counted, and past the limit answered 429.

    A valid token is never refused: tokens are 256-bit random secrets that no rate of guessing
    can find, so refusing them would only let anyone sharing an address (a NAT, a proxy) lock
    out every worker behind it. The throttle slows and flags clients that send bad tokens.
    """
    secret = bearer(request.headers.get("Authorization"))
    try:
        return _authenticate(secret)
    except Unauthorized:
        if secret is None:
            raise  # no credentials at all: nothing guessed, nothing to count
        counters = [(throttling.rules().bearer_address, throttling.client_address())]
        throttling.check(counters)
        throttling.record_failure(counters)
        raise


def _authenticate(secret: str | None) -> Token:
    """``authenticate`` on the request's session; a reading one (GET) records the token's use
    in a short write transaction of its own, as seldom as ``use_is_due`` says."""
    if not is_reading(g.db):
        return authenticate(g.db, secret)
    token = authenticate(g.db, secret, record_use=False)
    now = utcnow()
    if use_is_due(token, now):
        with transaction(context.current().sessions) as session:
            record_use(session, token.id, now)
    return token
