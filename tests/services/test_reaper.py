"""The reaper on SQLite and PostgreSQL: expired leases re-queued with nobody claiming, one reap
at a time across sessions, and a late completion racing a reap into exactly one outcome."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter

import pytest
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session, sessionmaker

from registry.db import is_postgres, make_session_factory, transaction
from registry.errors import StaleLease
from registry.models import Run
from registry.services import queue
from registry.services.reaper import Reaper, reap_once
from registry.settings import Settings
from tests.support.builders import make_version
from tests.support.procs import wait_for

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
LEASE = 60
LATE = T0 + dt.timedelta(seconds=LEASE + 1)


def _queued_and_claimed(factory: sessionmaker[Session], n: int = 1) -> dict[int, str]:
    """``n`` runs claimed at T0 (committed); run id -> lease."""
    with transaction(factory) as s:
        version = make_version(s)
        for _ in range(n):
            queue.enqueue(s, version, "train")
    claimed: dict[int, str] = {}
    with transaction(factory) as s:
        while (claim := queue.claim(s, "w1", ["default"], T0, LEASE)) is not None:
            claimed[claim.run.id] = claim.lease
    return claimed


def _state(factory: sessionmaker[Session], run_id: int) -> tuple[str, int, object]:
    with factory() as s:
        run = s.get(Run, run_id)
        assert run is not None
        return run.status, run.attempt, run.metrics


def test_the_reaper_requeues_an_expired_lease_with_nobody_claiming_or_listing(
    engine: Engine,
) -> None:
    factory = make_session_factory(engine)
    with transaction(factory) as s:
        run_id = queue.enqueue(s, make_version(s), "train").id
    with transaction(factory) as s:
        claim = queue.claim(s, "w1", ["default"], queue.db_now(s), lease_seconds=1)
        assert claim is not None
    started = time.monotonic()
    with Reaper(factory, interval=0.2) as reaper:
        wait_for(lambda: _state(factory, run_id)[0] == "queued", 10, "the reaper to requeue")
        assert reaper.ticks >= 1
    assert _state(factory, run_id)[:2] == ("queued", 2)
    assert time.monotonic() - started < 1 + 10


def test_a_reaper_outlives_a_failing_tick(engine: Engine) -> None:
    broken = make_session_factory(engine)
    broken.configure(bind=None)  # every tick raises: no bind
    with Reaper(broken, interval=0.05) as reaper:
        wait_for(lambda: reaper.ticks >= 3, 5, "three failed ticks")
    assert not reaper._thread.is_alive()


def test_a_reap_in_progress_makes_another_reap_wait_or_do_nothing(engine: Engine) -> None:
    """One reap at a time: PostgreSQL's advisory lock makes the second do nothing at all (not
    even reap a run the first left alone); SQLite's one writer makes it wait its turn."""
    factory = make_session_factory(engine)
    with transaction(factory) as s:
        version = make_version(s)
        early, later = (queue.enqueue(s, version, "train").id for _ in range(2))
    with transaction(factory) as s:
        assert queue.claim(s, "w1", ["default"], T0, LEASE) is not None
        assert queue.claim(s, "w2", ["default"], T0 + dt.timedelta(seconds=30), LEASE)
    first, second = factory(), []
    try:
        assert [r.id for r in queue.reap(first, LATE)] == [early]  # only the first expired

        def other() -> None:
            with transaction(factory) as s:
                second.append([r.id for r in queue.reap(s, LATE + dt.timedelta(seconds=60))])

        thread = threading.Thread(target=other)
        thread.start()
        thread.join(1.0)
        if is_postgres(engine):
            assert second == [[]]  # did not wait, reaped nothing: another reap holds the lock
        else:
            assert thread.is_alive()  # waits for the writer
        first.commit()
        thread.join(30)
        assert second == ([[]] if is_postgres(engine) else [[later]])
    finally:
        first.close()
    assert _state(factory, early)[:2] == ("queued", 2)


def test_several_reapers_at_once_reap_each_run_once(engine: Engine) -> None:
    factory = make_session_factory(engine)
    claimed = _queued_and_claimed(factory, 30)
    reaped: list[int] = []
    lock = threading.Lock()

    def reaper() -> None:
        for _ in range(20):
            with transaction(factory) as s:
                ids = [r.id for r in queue.reap(s, LATE)]
            with lock:
                reaped.extend(ids)

    threads = [threading.Thread(target=reaper) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert Counter(reaped) == Counter(list(claimed))  # each of the 30 exactly once
    with factory() as s:
        rows = s.execute(select(Run.status, Run.attempt)).all()
    assert set(rows) == {("queued", 2)}


def _complete(factory: sessionmaker[Session], run_id: int, lease: str, out: list[str]) -> None:
    try:
        with transaction(factory) as s:
            queue.complete(s, run_id, lease, "succeeded", {"loss": 1.0}, "m", {}, None, LATE)
        out.append("completed")
    except StaleLease:
        out.append("stale")


@pytest.mark.parametrize("first", ["reap", "complete"])
def test_a_late_completion_racing_a_reap_gives_exactly_one_outcome(
    engine: Engine, first: str
) -> None:
    """Whichever takes the run's row first wins; the other finds the run moved on."""
    factory = make_session_factory(engine)
    [(run_id, lease)] = _queued_and_claimed(factory).items()
    holder = factory()
    outcome: list[str] = []
    reaped: list[int] = []
    try:
        if first == "reap":
            assert [r.id for r in queue.reap(holder, LATE)] == [run_id]
            racer = threading.Thread(target=_complete, args=(factory, run_id, lease, outcome))
        else:
            queue.complete(holder, run_id, lease, "succeeded", {"loss": 1.0}, "m", {}, None, LATE)

            def racer_reap() -> None:
                with transaction(factory) as s:
                    reaped.extend(r.id for r in queue.reap(s, LATE))

            racer = threading.Thread(target=racer_reap)
        racer.start()
        racer.join(0.5)
        holder.commit()
        racer.join(30)
    finally:
        holder.close()
    status, attempt, metrics = _state(factory, run_id)
    if first == "reap":
        assert outcome == ["stale"]
        assert (status, attempt, metrics) == ("queued", 2, None)
    else:
        assert reaped == []
        assert (status, attempt, metrics) == ("succeeded", 1, {"loss": 1.0})


def test_reap_once_reports_what_it_reaped(engine: Engine) -> None:
    factory = make_session_factory(engine)
    with transaction(factory) as s:
        run_id = queue.enqueue(s, make_version(s), "train").id
    with transaction(factory) as s:
        assert queue.claim(s, "w1", ["default"], queue.db_now(s), lease_seconds=0) is not None
    time.sleep(0.05)
    assert reap_once(factory) == [run_id]
    assert reap_once(factory) == []


def test_the_reap_interval_setting_takes_seconds_and_names_itself_when_wrong() -> None:
    def interval(raw: str | None) -> float:
        env = {} if raw is None else {"REGISTRY_REAP_INTERVAL": raw}
        return Settings.from_env(env, env_file=None).reap_interval

    assert (interval(None), interval("0.5"), interval("0")) == (3.0, 0.5, 0.0)
    for bad in ("-1", "soon", "nan", "inf"):
        with pytest.raises(ValueError, match="REGISTRY_REAP_INTERVAL"):
            interval(bad)
    with pytest.raises(ValueError, match="> 0 seconds"):
        Reaper(make_session_factory(create_engine("sqlite://")), 0)
