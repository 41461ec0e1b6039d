"""Failed-authentication counters in the database, shared by every server process.

A counter is one ``auth_failures`` row per key (``scope:value``, e.g. ``signin-account:ada``)
holding a fixed window: when it started and how many failures it has seen. ``check`` refuses
(``Throttled``, 429) once a key's window holds ``limit`` failures, before the caller does any
costly work such as a password hash; ``record_failure`` counts one more with a single atomic
upsert (``INSERT ... ON CONFLICT DO UPDATE``, on SQLite and PostgreSQL alike), so concurrent
failures in several processes never lose a count. Time is a parameter (``now``) throughout.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from registry.db import is_postgres
from registry.errors import TooManyRequests
from registry.models import AuthFailure

#: Values longer than this are stored by their sha256 so that a key fits its column.
_MAX_VALUE = 180


class Throttled(TooManyRequests):
    """Too many failed attempts; wait before trying again."""

    code = "throttled"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"too many failed attempts; try again in {retry_after} s", retry_after=retry_after
        )


@dataclass(frozen=True)
class Rule:
    """At most ``limit`` failures per ``window`` for each value of one scope."""

    scope: str
    limit: int
    window: dt.timedelta

    def __post_init__(self) -> None:
        if self.limit < 1 or self.window.total_seconds() < 1:
            raise ValueError(f"rule {self.scope}: limit and window must be positive")

    def key(self, value: str) -> str:
        """The counter's key for ``value`` (long values by their digest)."""
        if len(value) > _MAX_VALUE:
            value = "sha256:" + hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()
        return f"{self.scope}:{value}"


#: A counter to check or bump: the rule and the value it is counted for.
Counter = tuple[Rule, str]


def check(session: Session, counters: Sequence[Counter], now: dt.datetime) -> None:
    """Raise ``Throttled`` (with the longest wait) if any counter's window is full at ``now``."""
    by_key = {rule.key(value): rule for rule, value in counters}
    rows = session.execute(
        select(AuthFailure.key, AuthFailure.window_start, AuthFailure.count).where(
            AuthFailure.key.in_(by_key)
        )
    )
    waits = []
    for key, window_start, count in rows:
        rule = by_key[key]
        ends = window_start + rule.window
        if count >= rule.limit and ends > now:
            waits.append(max(1, math.ceil((ends - now).total_seconds())))
    if waits:
        raise Throttled(max(waits))


def record_failure(session: Session, counters: Sequence[Counter], now: dt.datetime) -> None:
    """Count one failure on each counter at ``now``; a window that has ended starts afresh."""
    for rule, value in counters:
        session.execute(_upsert(session, rule, value, now))
    _purge(session, [rule for rule, _ in counters], now)
    session.flush()


def _upsert(session: Session, rule: Rule, value: str, now: dt.datetime) -> Any:
    """One atomic ``INSERT ... ON CONFLICT (key) DO UPDATE`` bumping or restarting a window."""
    insert = pg_insert if is_postgres(session) else sqlite_insert
    stmt = insert(AuthFailure).values(key=rule.key(value), window_start=now, count=1)
    # Both CASEs read the row as it was before this update (SQL semantics).
    ended = AuthFailure.window_start <= now - rule.window
    return stmt.on_conflict_do_update(
        index_elements=[AuthFailure.key],
        set_={
            "count": case((ended, 1), else_=AuthFailure.count + 1),
            "window_start": case(
                (ended, stmt.excluded.window_start), else_=AuthFailure.window_start
            ),
        },
    )


def clear(session: Session, counters: Sequence[Counter]) -> None:
    """Forget the failures of these counters (a successful sign-in of that account)."""
    keys = [rule.key(value) for rule, value in counters]
    session.execute(delete(AuthFailure).where(AuthFailure.key.in_(keys)))
    session.flush()


def _purge(session: Session, rules: Sequence[Rule], now: dt.datetime) -> None:
    """Delete this scope's counters whose window ended, so the table stays small."""
    for rule in {r.scope: r for r in rules}.values():
        session.execute(
            delete(AuthFailure).where(
                AuthFailure.key.startswith(f"{rule.scope}:", autoescape=True),
                AuthFailure.window_start <= now - rule.window,
            )
        )
