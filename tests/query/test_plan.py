"""The planner's branches, on both databases: each gives the pages the plain compiled query
gives, and each is reached (its thresholds shrunk so that 48 runs reach them)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from registry.errors import BadRequest
from registry.query import compile as compile_
from registry.query import plan, select
from registry.query.compile import PLAIN, How, make_resolver
from registry.query.parse import And, Node, parse, parse_order_by
from registry.query.search import MAX_LIMIT, check_limit, search_runs
from tests.support.querydata import make_runs

FILTERS = [
    None,
    "status != 'queued'",
    "metrics.val_loss >= 1.5 AND metrics.val_loss < 2.5",
    "params.model.model_dim IN (128, 512) AND metrics.train_loss > 1.5",
    "params.training.gradient_checkpointing = true AND params.data.dataset LIKE 'builtin:%'",
    "config LIKE 'tiny%' OR worker = 'w1'",
]
ORDERS = [
    "params.training.learning_rate",
    "params.training.learning_rate DESC",
    "params.data.dataset",
    "params.model.vocab_size DESC",
    "metrics.val_loss",
    "metrics.val_loss DESC",
    "created_at DESC",
    "worker",
    "id",
]
PARAM_ORDERS = ["params.training.learning_rate", "params.training.learning_rate DESC"]


def pages(session: Session, expr: str | None, order: str, size: int, planned: bool) -> list[int]:
    """Every run of ``expr`` in ``order``, read ``size`` at a time by cursor."""
    ids: list[int] = []
    cursor: str | None = None
    while True:
        runs, cursor = search_runs(session, expr, order, size, cursor, planned=planned)
        assert len(runs) == size or cursor is None
        ids += [r.id for r in runs]
        if cursor is None:
            return ids


def assert_same_pages(session: Session, filters: list[str | None], orders: list[str]) -> None:
    for expr in filters:
        for order in orders:
            plain = pages(session, expr, order, 1000, planned=False)
            for size in (3, 1000):
                assert pages(session, expr, order, size, planned=True) == plain, (expr, order)
                assert pages(session, expr, order, size, planned=False) == plain, (expr, order)


@pytest.fixture
def runs(session: Session) -> None:
    make_runs(session)


@pytest.fixture
def selects(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Each select the planner builds: its order key, part, keyset bound and version list."""
    calls: list[dict[str, Any]] = []
    real = plan.select_page

    def spy(node: Any, order: Any, limit: int, after: Any, *args: Any, **kw: Any) -> Any:
        part = args[0] if args else kw.get("part", "all")
        order_key = order.key.name if order is not None else None
        calls.append({"order": order_key, "part": part, "after": after, **kw})
        return real(node, order, limit, after, *args, **kw)

    monkeypatch.setattr(plan, "select_page", spy)
    return calls


def test_planned_pages_are_the_plain_query_pages(session: Session, runs: None) -> None:
    assert_same_pages(session, FILTERS, ORDERS)


def test_a_metric_order_is_the_runs_holding_it_then_those_lacking_it(
    session: Session, runs: None, selects: list[dict[str, Any]]
) -> None:
    search_runs(session, None, "metrics.val_loss", 1000)
    assert [c["part"] for c in selects] == ["present", "lacking"]
    parts_per_page: list[list[str]] = []
    cursor: str | None = None
    while True:
        selects.clear()
        _, cursor = search_runs(session, None, "metrics.val_loss", 3, cursor)
        parts_per_page.append([c["part"] for c in selects])
        if cursor is None:
            break
    assert parts_per_page[0] == ["present"]  # a full page: the lacking part is not read
    assert ["present", "lacking"] in parts_per_page or ["lacking"] in parts_per_page
    assert parts_per_page[-1] == ["lacking"]  # a cursor in the lacking part reads only it


def test_a_metric_orders_range_bounds_its_index_walk(session: Session) -> None:
    node = parse("metrics.val_loss >= 1.5 AND metrics.val_loss < 2.5 AND status = 'failed'")
    order = parse_order_by("metrics.val_loss")
    sql = str(select.select_page(node, order, 10, None, "present").compile())
    assert "run_metrics_1.value >= " in sql and "run_metrics_1.value < " in sql
    assert "run_metrics.value" not in sql  # not tested again as a list of every run
    lacking = str(select.select_page(node, order, 10, None, "lacking").compile())
    assert "run_metrics.value >= " in lacking  # the lacking part keeps the clauses


def test_a_param_order_walks_its_values_a_group_at_a_time(
    session: Session, runs: None, selects: list[dict[str, Any]]
) -> None:
    assert_same_pages(session, FILTERS, PARAM_ORDERS)
    walked = [c for c in selects if c["order"] == "id"]
    assert walked and all(c["versions"] for c in walked)
    # Four values, fewer than GROUP_WALK: the walk covers them all, no select sorts the rest.
    assert not [c for c in selects if c["part"] == "present" and c["after"] is not None]


def test_after_group_walk_values_one_select_sorts_the_rest_past_all_ties(
    session: Session, runs: None, selects: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plan, "GROUP_WALK", 1)
    assert_same_pages(session, FILTERS, PARAM_ORDERS)
    tails = [c for c in selects if c["part"] == "present" and c["order"] != "id"]
    assert tails and any(c["after"] is not None and c["after"][1] is None for c in tails)


def test_past_the_values_read_a_param_order_is_one_sorted_select(
    session: Session, runs: None, selects: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # 12 versions, 3 per learning rate: 4 rows read hold the first value and part of the
    # second, which is dropped (it may lack versions); pages past it come from one select.
    monkeypatch.setattr(plan, "GROUP_ROWS", 4)
    groups, truncated = plan._param_groups(session, parse_order_by(PARAM_ORDERS[0]))
    assert truncated and [len(ids) for _, ids in groups] == [3]
    assert_same_pages(session, FILTERS, PARAM_ORDERS)
    sorted_ = [c for c in selects if c["part"] == "present" and c["order"] != "id"]
    assert any(c["after"] is not None and c["after"][1] is None for c in sorted_)  # the tail
    assert any(c["after"] is not None and c["after"][1] is not None for c in sorted_)  # past


def test_no_groups_read_is_one_sorted_select(
    session: Session, runs: None, selects: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plan, "GROUP_ROWS", 0)
    assert_same_pages(session, FILTERS[:3], PARAM_ORDERS)
    assert not [c for c in selects if c["order"] == "id"]


def _clause(item: Node) -> tuple[str, Any]:
    found = select._param_item(item)
    assert found is not None
    return found


def test_param_clauses_become_version_lists_or_stay_subqueries(
    session: Session, runs: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    versions_of = make_resolver(session)
    node = parse("params.model.model_dim = 256 AND params.training.learning_rate < 4e-5")
    assert isinstance(node, And)
    each = [set(versions_of(*_clause(item)) or ()) for item in node.items]
    listed, rest = select._merge_params(node, How(versions=versions_of))
    assert rest is None and listed == sorted(each[0] & each[1])  # one list: the intersection
    assert listed and len(listed) < min(len(ids) for ids in each)
    sql = str(select.select_page(node, None, 10, None, how=How(versions=versions_of)).compile())
    assert "version_params" not in sql
    monkeypatch.setattr(compile_, "MAX_LISTED_VERSIONS", 1)
    many = make_resolver(session)
    assert many(*_clause(node.items[0])) is None  # too many versions to list
    sql = str(select.select_page(node, None, 10, None, how=How(versions=many)).compile())
    assert "version_params" in sql
    assert_same_pages(session, FILTERS, ["params.training.learning_rate", "metrics.val_loss"])


def test_sqlite_walks_an_indexed_order_with_no_filter_term_on_an_index(session: Session) -> None:
    versions_of = make_resolver(session)
    on_sqlite = session.get_bind().dialect.name == "sqlite"
    for order, indexed in [
        ("created_at DESC", True),
        ("id", True),
        ("metrics.val_loss", True),
        ("params.training.learning_rate", True),
        ("worker", False),
    ]:
        how = plan.walk_how(session, versions_of, parse_order_by(order))
        assert how.hint == (on_sqlite and indexed), order
        assert how.versions is versions_of
    assert plan.walk_how(session, versions_of, None).hint == on_sqlite
    node, order = parse("status = 'failed'"), parse_order_by("created_at DESC")
    hinted = select.select_page(node, order, 10, None, how=How(hint=True))
    assert "+runs.status" in str(hinted.compile(dialect=sqlite.dialect()))
    assert "+runs" not in str(hinted.compile(dialect=postgresql.dialect()))
    assert "+runs" not in str(select.select_page(node, order, 10, None, how=PLAIN).compile())


def test_hinted_and_plain_filters_match_the_same_runs(session: Session, runs: None) -> None:
    for expr in [f for f in FILTERS if f]:
        found = {}
        for hint in (False, True):
            query = select.select_page(parse(expr), None, 1000, None, how=How(hint=hint))
            found[hint] = [run.id for run, *_ in session.execute(query)]
        assert found[True] == found[False], expr


def test_the_page_limit_is_checked_once_here() -> None:
    assert check_limit(1) == 1 and check_limit(MAX_LIMIT) == MAX_LIMIT
    for bad in (0, -1, MAX_LIMIT + 1):
        with pytest.raises(BadRequest, match="limit must be between 1 and 1000"):
            check_limit(bad)
