"""How a page of runs is fetched: the plan of each select and the selects a page takes.

Param clauses are resolved to literal version id lists first (:func:`make_resolver`). Then
:func:`choose_plan` chooses between walking the order's index (LIMIT stops it early) and
driving from the most selective top-level term (filter first, then sort), by counting each
candidate term's runs up to a cap in one statement. A param order walks the param's distinct
values (:func:`_present_by_param`). On PostgreSQL parallel workers are off for the page's
transaction.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from registry.models import Config, ConfigVersion, Run, RunMetric, VersionParam
from registry.query.compile import (
    OPS,
    How,
    Resolver,
    as_float,
    column_compare,
    compile_in,
    make_resolver,
    param_in_test,
    param_present,
    param_sub,
    param_test,
)
from registry.query.parse import And, Compare, In, Key, Node, Or, OrderBy
from registry.query.select import DEFAULT_PLAN, After, Plan, conjuncts, pushdown, select_page

#: Candidate runs counted, at most, to size a driving term (an index-only count).
COUNT_CAP = 5000
#: Column orders an index serves (ids are SQLite's rowids).
_INDEXED_ORDERS = frozenset({"id", "created_at"})
#: A param order walks at most this many groups of runs sharing a value one at a time.
GROUP_WALK = 8
#: Rows of (value, version) a param order reads to form its groups.
GROUP_ROWS = 2000


def fetch_rows(
    session: Session,
    node: Node | None,
    order: OrderBy | None,
    limit: int,
    after: tuple[list[Any], int] | None,
) -> list[Any]:
    """Up to ``limit`` rows ``(run, *sort values)`` after the keyset bound ``after``.

    A param or metric order runs as two selects: the runs holding a value, inner-joined to
    the index row so the (key, value, id) index yields them in order and LIMIT stops early;
    then, if the page is not full and the filter lets such runs through, those lacking it.
    """
    _no_parallel_workers(session)
    versions_of = make_resolver(session)
    if order is None or order.key.kind == "column":
        plan = choose_plan(session, versions_of, node, order, limit)
        return list(session.execute(select_page(node, order, limit, after, plan=plan)).all())
    in_lacking = after is not None and all(v is None for v in after[0])
    rows: list[Any] = []
    if not in_lacking and order.key.kind == "param":
        rows = _present_by_param(session, versions_of, node, order, limit, after)
    elif not in_lacking:
        plan = choose_plan(session, versions_of, node, order, limit)
        rows = list(session.execute(select_page(node, order, limit, after, "present", plan)).all())
    plain = Plan(How(versions=versions_of))
    if len(rows) < limit and not _requires(node, order.key):
        rest = after if in_lacking else None
        lacking = select_page(node, order, limit - len(rows), rest, "lacking", plain)
        rows += session.execute(lacking).all()
    return rows


def _no_parallel_workers(session: Session) -> None:
    """On PostgreSQL, no parallel workers for this transaction: a page is a few milliseconds
    of index walking, and starting workers costs more (20 ms measured at 100k runs)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SET LOCAL max_parallel_workers_per_gather = 0"))


def _requires(node: Node | None, key: Key) -> bool:
    """True when every run ``node`` matches holds a value for ``key``."""
    if isinstance(node, Compare):
        return node.key == key and node.value is not None and node.op != "NOT LIKE"
    if isinstance(node, In):
        return node.key == key and not node.negated and None not in node.values
    if isinstance(node, And):
        return any(_requires(n, key) for n in node.items)
    if isinstance(node, Or):
        return all(_requires(n, key) for n in node.items)
    return False


def _present_by_param(
    session: Session,
    versions_of: Resolver,
    node: Node | None,
    order: OrderBy,
    limit: int,
    after: tuple[list[Any], int] | None,
) -> list[Any]:
    """The runs holding a value of the param ``order`` sorts by, in order: ``(run, num, text)``.

    Runs sharing a value tie, and ties break on id, so one select must read and sort every
    run of the first values' versions (tens of thousands when a value is common). Instead,
    walk the distinct values in order (a few hundred rows of version_params) and, for each,
    the runs of its versions by id, which an index (or SQLite's rowid) yields in order, with
    LIMIT stopping early: a few small selects. After GROUP_WALK values, one select sorts the
    rest."""
    groups, truncated = _param_groups(session, order)
    start = 0
    if after is not None:
        start = next((i for i, (value, _) in enumerate(groups) if value == after[0]), -1)
    if start < 0 or not groups:
        plan = choose_plan(session, versions_of, node, order, limit)
        return list(session.execute(select_page(node, order, limit, after, "present", plan)).all())
    by_id = OrderBy(Key("column", "id"), order.descending)
    rows: list[Any] = []
    walked = groups[start : start + GROUP_WALK]
    for i, (value, version_ids) in enumerate(walked):
        term = Run.config_version_id.in_(version_ids)
        plan = choose_plan(session, versions_of, node, by_id, limit - len(rows), extra=term)
        within = ([after[1]], after[1]) if i == 0 and after is not None else None
        page = select_page(node, by_id, limit - len(rows), within, plan=plan, versions=version_ids)
        rows += [(run, *value) for run, _id in session.execute(page).all()]
        if len(rows) >= limit:
            return rows
    if start + len(walked) < len(groups) or truncated:
        plan = choose_plan(session, versions_of, node, order, limit - len(rows))
        rest: After = (walked[-1][0], None)  # past every run of the last walked value
        rows += session.execute(select_page(node, order, limit - len(rows), rest, "present", plan))
    return rows


def _param_groups(
    session: Session, order: OrderBy
) -> tuple[list[tuple[list[Any], list[int]]], bool]:
    """The first distinct values of the param ``order`` sorts by, in order, each with the
    versions holding it: ``([num, text], version ids)``; and whether more rows were left."""
    vp = VersionParam
    ordering = [(c.desc() if order.descending else c.asc()).nulls_last() for c in (vp.num, vp.text)]
    found = session.execute(
        sa.select(vp.num, vp.text, vp.version_id)
        .where(vp.key == order.key.name, param_present())
        .order_by(*ordering, vp.version_id)
        .limit(GROUP_ROWS + 1)
    ).all()
    groups: list[tuple[list[Any], list[int]]] = []
    for num, text, version_id in found:
        if groups and groups[-1][0] == [num, text]:
            groups[-1][1].append(version_id)
        else:
            groups.append(([num, text], [version_id]))
    truncated = len(found) > GROUP_ROWS
    if truncated:
        groups.pop()  # it may lack versions
    return groups, truncated


def choose_plan(
    session: Session,
    versions_of: Resolver,
    node: Node | None,
    order: OrderBy | None,
    limit: int,
    extra: ColumnElement[bool] | None = None,
) -> Plan:
    """The plan of one page. Param clauses are resolved to version ids on both databases.

    Then choose between walking the order's index (LIMIT stops it early) and driving from
    the most selective top-level term (:func:`_driver`). SQLite keeps no statistics unless
    someone runs ANALYZE, and even then cannot size an ``IN (SELECT ...)`` list, so it is told
    both ways (``query_compile.wrap``). PostgreSQL plans well from its statistics, except when
    the filter correlates with the order (runs with ``temperature = 0.7`` sit in the middle of
    ``gen_distinct_2`` order, not spread through it): it is only told to drive, by an order no
    index serves."""
    if node is None and extra is None:
        return DEFAULT_PLAN
    sqlite = session.get_bind().dialect.name == "sqlite"
    driver = _driver(session, node, order, limit, extra)
    if driver is None:
        return _walk_plan(sqlite, versions_of, order)
    # PostgreSQL picks the driving term itself once the order cannot come from an index.
    return Plan(How(sqlite, versions_of), driver if sqlite else sa.true())


def _walk_plan(sqlite: bool, versions_of: Resolver, order: OrderBy | None) -> Plan:
    """Walk the order's index: on SQLite no filter term may use an index when one serves the
    order; otherwise (and on PostgreSQL) the database decides."""
    ordered = order is None or order.key.kind != "column" or order.key.name in _INDEXED_ORDERS
    return Plan(How(sqlite and ordered, versions_of))


def _driver(
    session: Session,
    node: Node | None,
    order: OrderBy | None,
    limit: int,
    extra: ColumnElement[bool] | None,
) -> ColumnElement[bool] | None:
    """The top-level term to drive from, or None to walk the order's index.

    Each candidate term's runs are counted up to a cap in one statement. Walking the order
    costs about ``limit / selectivity`` probes, driving about ``matches`` rows and a sort:
    drive when a term matches fewer than ``sqrt(limit * runs)`` runs, unless the order's own
    range (a metric order's range clauses) is that short: then walking it is cheaper still."""
    sort_metric = order.key if order is not None and order.key.kind == "metric" else None
    drivers = _drivers(node, sort_metric, extra)
    ranged = None
    if sort_metric is not None and (tests := pushdown(node, sort_metric, RunMetric.value)):
        ranged = sa.select(RunMetric.run_id).where(RunMetric.key == sort_metric.name, *tests)
    counted = [ids for _, ids in drivers] + ([ranged] if ranged is not None else [])
    if not counted:
        return None
    runs, counts = _count(session, counted)
    threshold = min(COUNT_CAP, max(1.0, ((limit + 1) * (runs or 0)) ** 0.5))
    if not drivers or (ranged is not None and counts[-1] < threshold):
        return None
    best = min(range(len(drivers)), key=lambda i: counts[i])
    return drivers[best][0] if counts[best] < threshold else None


def _drivers(
    node: Node | None, sort_metric: Key | None, extra: ColumnElement[bool] | None
) -> list[tuple[ColumnElement[bool], Any]]:
    """The top-level terms that could drive the query: (the term, the ids it selects)."""
    drivers: list[tuple[ColumnElement[bool], Any]] = []
    if extra is not None:
        drivers.append((extra, sa.select(Run.id).where(extra)))
    versions = [sub for item in conjuncts(node) if (sub := _version_sub(item)) is not None]
    if versions:
        matched: Any = versions[0]
        if len(versions) > 1:
            matched = sa.intersect(*versions)
        term = Run.config_version_id.in_(matched)
        drivers.append((term, sa.select(Run.id).where(term)))
    for item in conjuncts(node):
        if sort_metric is not None and getattr(item, "key", None) == sort_metric:
            continue  # the ordered walk of the sort metric's index covers these
        if (test := _metric_test(item)) is not None:
            ids = sa.select(RunMetric.run_id).where(test)
            drivers.append((Run.id.in_(ids), ids))
        if (statuses := _status_values(item)) is not None:
            term = Run.status.in_(statuses)
            drivers.append((term, sa.select(Run.id).where(term)))
    return drivers


def _count(session: Session, counted: list[Any]) -> tuple[int | None, list[int]]:
    """The largest run id (about the number of runs) and each select's rows, up to COUNT_CAP,
    in one statement."""
    total = sa.select(sa.func.max(Run.id)).scalar_subquery()
    capped = [
        sa.select(sa.func.count()).select_from(ids.limit(COUNT_CAP).subquery()).scalar_subquery()
        for ids in counted
    ]
    runs, *counts = session.execute(sa.select(total, *capped)).one()
    return runs, counts


def _version_sub(item: Node) -> Any:
    """The config versions every run matching ``item`` runs, as a select, or None when
    ``item`` says nothing of the version (or lets runs of any version through)."""
    if isinstance(item, Compare) and item.op != "NOT LIKE":
        op, value = item.op, item.value
    elif isinstance(item, In) and not item.negated and None not in item.values:
        op, value = "IN", None
    else:
        return None
    key = item.key
    if key.kind == "param":
        if isinstance(item, In):
            return param_sub(key.name, param_in_test(list(item.values)))
        if value is None:
            return param_sub(key.name, param_present()) if op == "!=" else None
        return param_sub(key.name, param_test(op, value))
    if key.kind == "column" and key.name in ("config", "version", "config_hash"):
        if isinstance(item, In):
            test = compile_in(key, item.values)
        elif value is None:
            return None
        else:
            test = column_compare(key.name, op, value)
        sub = sa.select(ConfigVersion.id)
        if key.name == "config":
            sub = sub.join(Config, Config.id == ConfigVersion.config_id)
        return sub.where(test)
    return None


def _metric_test(item: Node) -> ColumnElement[bool] | None:
    """The ``run_metrics`` rows a run matching ``item`` must hold, or None."""
    if isinstance(item, Compare) and item.key.kind == "metric" and item.op in OPS:
        if item.value is None:
            return RunMetric.key == item.key.name if item.op == "!=" else None
        return sa.and_(
            RunMetric.key == item.key.name, OPS[item.op](RunMetric.value, as_float(item.value))
        )
    if isinstance(item, In) and item.key.kind == "metric" and not item.negated:
        if None in item.values:
            return None
        nums = [as_float(v) for v in item.values]
        return sa.and_(RunMetric.key == item.key.name, RunMetric.value.in_(nums))
    return None


def _status_values(item: Node) -> list[str] | None:
    """The statuses a run matching ``item`` has, or None."""
    if isinstance(item, Compare) and item.key == Key("column", "status") and item.op == "=":
        return [str(item.value)]
    if isinstance(item, In) and item.key == Key("column", "status") and not item.negated:
        return [str(v) for v in item.values] if None not in item.values else None
    return None
