"""Failed-authentication counters: per key, fixed windows, atomic across sessions and engines."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from registry.db import make_engine, make_session_factory, transaction, utcnow
from registry.models import AuthFailure
from registry.services import throttle
from registry.services.throttle import Rule, Throttled

WINDOW = dt.timedelta(minutes=15)
ACCOUNT = Rule("signin-account", 3, WINDOW)
ADDRESS = Rule("signin-address", 5, WINDOW)


def _fail(session: Session, counters: list[throttle.Counter], now: dt.datetime, n: int) -> None:
    for _ in range(n):
        throttle.check(session, counters, now)
        throttle.record_failure(session, counters, now)


def test_refused_at_the_limit_until_the_window_ends(session: Session) -> None:
    t0 = utcnow()
    counters = [(ACCOUNT, "ada")]
    _fail(session, counters, t0, 3)
    with pytest.raises(Throttled) as refused:
        throttle.check(session, counters, t0 + dt.timedelta(seconds=10))
    assert refused.value.status == 429
    assert refused.value.retry_after == 15 * 60 - 10
    assert refused.value.to_dict()["retry_after"] == 15 * 60 - 10
    # One second before the window ends it still holds; at its end it has gone.
    with pytest.raises(Throttled):
        throttle.check(session, counters, t0 + WINDOW - dt.timedelta(seconds=1))
    throttle.check(session, counters, t0 + WINDOW)
    # A failure after the window starts a new one at one.
    throttle.record_failure(session, counters, t0 + WINDOW)
    row = session.get(AuthFailure, ACCOUNT.key("ada"))
    assert row is not None and row.count == 1 and row.window_start == t0 + WINDOW


def test_accounts_and_addresses_count_apart(session: Session) -> None:
    now = utcnow()
    _fail(session, [(ACCOUNT, "ada"), (ADDRESS, "10.0.0.1")], now, 3)
    with pytest.raises(Throttled):
        throttle.check(session, [(ACCOUNT, "ada"), (ADDRESS, "10.0.0.2")], now)
    # Another account from the same address still has room: the address holds 3 of 5.
    throttle.check(session, [(ACCOUNT, "bob"), (ADDRESS, "10.0.0.1")], now)
    _fail(session, [(ACCOUNT, "bob"), (ADDRESS, "10.0.0.1")], now, 2)
    with pytest.raises(Throttled):
        throttle.check(session, [(ACCOUNT, "cyd"), (ADDRESS, "10.0.0.1")], now)
    throttle.check(session, [(ACCOUNT, "cyd"), (ADDRESS, "10.0.0.2")], now)


def test_clear_forgets_an_account(session: Session) -> None:
    now = utcnow()
    _fail(session, [(ACCOUNT, "ada")], now, 3)
    throttle.clear(session, [(ACCOUNT, "ada")])
    throttle.check(session, [(ACCOUNT, "ada")], now)


def test_long_and_odd_values_fit_the_key(session: Session) -> None:
    now = utcnow()
    for value in ("x" * 100_000, "ü" * 500, "a%_\\:b", ""):
        _fail(session, [(ACCOUNT, value)], now, 3)
        with pytest.raises(Throttled):
            throttle.check(session, [(ACCOUNT, value)], now)
    assert max(len(k) for k in session.scalars(select(AuthFailure.key))) <= 255
    # "a%_\\:b" is a LIKE pattern: the purge must not read it as one.
    throttle.check(session, [(ACCOUNT, "aXY\\:b")], now)


def test_ended_windows_are_purged(session: Session) -> None:
    t0 = utcnow()
    for name in ("a", "b", "c"):
        throttle.record_failure(session, [(ACCOUNT, name)], t0)
    throttle.record_failure(session, [(ADDRESS, "10.0.0.1")], t0)
    throttle.record_failure(session, [(ACCOUNT, "d")], t0 + WINDOW)
    keys = set(session.scalars(select(AuthFailure.key)))
    # The other scope's rows are that scope's rule's to purge.
    assert keys == {ACCOUNT.key("d"), ADDRESS.key("10.0.0.1")}


def test_rules_refuse_nonsense() -> None:
    with pytest.raises(ValueError):
        Rule("x", 0, WINDOW)
    with pytest.raises(ValueError):
        Rule("x", 1, dt.timedelta(0))


def test_concurrent_failures_from_two_engines_all_count(engine: Engine, db_url: str) -> None:
    """Two engines stand in for two server processes; every upsert lands, none is lost."""
    now = utcnow()
    rule = Rule("signin-account", 1000, WINDOW)
    engines = [engine, make_engine(db_url)]
    errors: list[BaseException] = []

    def hammer(e: Engine) -> None:
        try:
            factory = make_session_factory(e)
            for _ in range(20):
                with transaction(factory) as s:
                    throttle.record_failure(s, [(rule, "ada")], now)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(engines[i % 2],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engines[1].dispose()
    assert not errors
    with make_session_factory(engine)() as s:
        assert s.scalar(select(AuthFailure.count).where(AuthFailure.key == rule.key("ada"))) == 80
