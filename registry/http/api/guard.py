"""The decorator every API view uses to authenticate and authorise its caller."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import g, request

from registry.services.auth import authenticate, bearer, check_capability

F = TypeVar("F", bound=Callable[..., Any])


def requires(capability: str) -> Callable[[F], F]:
    """Allow the view only to tokens whose role grants ``capability`` (read/write/work/admin)."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = authenticate(g.db, bearer(request.headers.get("Authorization")))
            check_capability(token, capability)
            g.token = token
            return view(*args, **kwargs)

        wrapper.required_capability = capability  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
