"""A clock that moves only when a test moves it (time is a parameter: no sleeping)."""

from __future__ import annotations

import datetime as dt

from registry.db import utcnow


class Clock:
    """Callable like ``utcnow``; ``advance`` moves it on."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self.now = start or utcnow()

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> dt.datetime:
        """Move the clock on by ``datetime.timedelta(**delta)``."""
        self.now += dt.timedelta(**delta)
        return self.now
