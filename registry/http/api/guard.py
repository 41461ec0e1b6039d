"""The decorator every API view uses to authenticate and authorise its caller."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import g, request

from registry.errors import Unauthorized
from registry.http import throttling
from registry.models import Token
from registry.services.auth import authenticate, bearer, check_capability

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
        return authenticate(g.db, secret)
    except Unauthorized:
        if secret is None:
            raise  # no credentials at all: nothing guessed, nothing to count
        counters = [(throttling.rules().bearer_address, throttling.client_address())]
        throttling.check(counters)
        throttling.record_failure(counters)
        raise
