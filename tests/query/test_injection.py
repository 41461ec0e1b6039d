"""Injection: hostile filters are rejected with a 400 or matched literally, never executed."""

from __future__ import annotations

import pytest
from sqlalchemy import func, inspect, select
from sqlalchemy.orm import Session

from registry.errors import FilterParseError
from registry.models import Run, RunMetric, VersionParam
from registry.query.search import search_runs
from tests.support.querydata import make_runs

REJECTED = [
    "' OR 1=1 --",
    "status = '' OR 1=1 --",
    "status = 'x' OR 1=1",
    "metrics.x; DROP TABLE runs",
    "metrics.x < 1; DROP TABLE runs",
    "status = 'a'; DROP TABLE runs; --",
    "status = 'a' -- comment",
    "status = 'a' /* c */",
    "1=1",
    "status = 'a' UNION SELECT * FROM tokens",
    "status = (SELECT 1)",
    "status = `a`",
    "metrics.val_loss < 2.5) OR (1=1",
    "params.model.model_dim = 1 OR params.x = 1",
    "params.'; DROP TABLE runs; -- = 1",
    'metrics."; DROP TABLE runs = 1',
    "id = 0x10",
    "status LIKE 'a' ESCAPE '!'",
    "config = 'a' || 'b'",
]

# Each is valid: the hostile text is a value, compared literally, and matches nothing.
LITERAL = [
    "params.model.model_dim = '1; DROP TABLE runs'",
    "status = ''' OR 1=1 --'",
    "status = '\\' OR 1=1 --'",
    'status = "x\\" OR \\"1\\"=\\"1"',
    "worker IN ('a''); DROP TABLE runs; --', '%')",
    "config LIKE '%''; DROP TABLE runs; --'",
    "params.data.dataset = 'builtin:x\\'; DELETE FROM version_params; --'",
    'metrics."x" < 1',
    "metrics.x/**/ < 1",
    "status = 'ünï; SELECT pg_sleep(5)'",
]


def _counts(session: Session) -> tuple[int, int, int]:
    return (
        session.scalar(select(func.count()).select_from(Run)) or 0,
        session.scalar(select(func.count()).select_from(RunMetric)) or 0,
        session.scalar(select(func.count()).select_from(VersionParam)) or 0,
    )


@pytest.fixture
def stocked(session: Session) -> tuple[int, int, int]:
    make_runs(session, n_runs=12)
    return _counts(session)


@pytest.mark.parametrize("expr", REJECTED)
def test_injection_is_rejected(session: Session, stocked: tuple[int, int, int], expr: str) -> None:
    with pytest.raises(FilterParseError) as info:
        search_runs(session, expr)
    assert info.value.status == 400
    assert 0 <= info.value.extra["position"] <= len(expr)
    assert _counts(session) == stocked


@pytest.mark.parametrize("expr", LITERAL)
def test_injection_is_matched_literally(
    session: Session, stocked: tuple[int, int, int], expr: str
) -> None:
    try:
        runs, _ = search_runs(session, expr)
    except FilterParseError:
        runs = []  # some are keys the parser refuses: just as safe
    assert runs == []
    session.commit()
    assert _counts(session) == stocked
    tables = set(inspect(session.connection()).get_table_names())
    assert {"runs", "run_metrics", "version_params", "config_versions"} <= tables


@pytest.mark.parametrize(
    "order_by", ["id; DROP TABLE runs", "metrics.x DESC, (SELECT 1)", "id DESC --", "1"]
)
def test_order_by_injection_is_rejected(
    session: Session, stocked: tuple[int, int, int], order_by: str
) -> None:
    with pytest.raises(FilterParseError):
        search_runs(session, None, order_by)
    assert _counts(session) == stocked


def test_a_stored_hostile_value_is_found_by_exact_match(session: Session) -> None:
    make_runs(session, n_runs=4)
    run = session.scalars(select(Run).order_by(Run.id)).first()
    assert run is not None
    run.worker_id = "x'); DROP TABLE runs; --"
    session.commit()
    found, _ = search_runs(session, "worker = 'x''); DROP TABLE runs; --'")
    assert [r.id for r in found] == [run.id]
    found, _ = search_runs(session, "worker LIKE '%drop table%'")
    assert [r.id for r in found] == [run.id]
