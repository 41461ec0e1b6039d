"""The clock requests read (sign-in throttling, web session expiry); tests set their own."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from flask import Flask, current_app

from registry.db import utcnow

KEY = "registry.clock"


def set_clock(app: Flask, clock: Callable[[], dt.datetime]) -> None:
    """Make ``app``'s requests read the time from ``clock`` (UTC-aware datetimes)."""
    app.extensions[KEY] = clock


def now() -> dt.datetime:
    """The current time for the app handling this request."""
    clock: Callable[[], dt.datetime] = current_app.extensions.get(KEY, utcnow)
    return clock()
