"""Concurrent writers: version numbers stay 1..N with no duplicates or gaps, and dedupe holds.

Each thread has its own session and transaction, as concurrent requests do; on PostgreSQL
they really interleave (row lock + unique constraint), on SQLite BEGIN IMMEDIATE serialises.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Engine

from registry.db import make_session_factory, transaction
from registry.errors import Conflict
from registry.services import configs

THREADS = 20


def doc(i: int) -> dict[str, Any]:
    return {"training": {"seed": 1000 + i}}


def run_together(engine: Engine, work: Callable[[Any, int], Any], n: int = THREADS) -> list[Any]:
    """Run ``work(session, i)`` in ``n`` threads, each in its own transaction, all at once."""
    factory = make_session_factory(engine)
    barrier = threading.Barrier(n)

    def one(i: int) -> Any:
        barrier.wait()
        try:
            with transaction(factory) as session:
                result = work(session, i)
                return (result.version.version, result.created)
        except Conflict as exc:
            return exc

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def stored_versions(engine: Engine, name: str) -> list[int]:
    with make_session_factory(engine)() as s:
        return [v.version for v in configs.get_config(s, name).versions]


def test_distinct_concurrent_versions_are_numbered_without_gaps(engine: Engine) -> None:
    with transaction(make_session_factory(engine)) as s:
        configs.create_config(s, "race", {})
    results = run_together(engine, lambda s, i: configs.add_version(s, "race", doc(i)))
    assert all(isinstance(r, tuple) and r[1] for r in results), results
    numbers = sorted(r[0] for r in results)
    assert numbers == list(range(2, THREADS + 2))
    assert stored_versions(engine, "race") == list(range(1, THREADS + 2))


def test_identical_concurrent_submissions_dedupe_to_one_version(engine: Engine) -> None:
    with transaction(make_session_factory(engine)) as s:
        configs.create_config(s, "same", {})
    results = run_together(engine, lambda s, i: configs.add_version(s, "same", doc(0)))
    assert sorted(results) == [(2, False)] * (THREADS - 1) + [(2, True)]
    assert stored_versions(engine, "same") == [1, 2]


def test_concurrent_creates_of_one_name_make_one_config(engine: Engine) -> None:
    results = run_together(engine, lambda s, i: configs.create_config(s, "new", doc(i)))
    made = [r for r in results if isinstance(r, tuple)]
    assert made == [(1, True)]
    assert sum(isinstance(r, Conflict) for r in results) == THREADS - 1
    assert stored_versions(engine, "new") == [1]
