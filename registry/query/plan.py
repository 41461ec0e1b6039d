"""How a page of runs is fetched: the selects a page takes, and how each compiles.

Each branch here wins at least 2x on a query of benchmarks/bench_planner.py's mix at 1M runs
over the plain compiled query (docs/benchmarks.md, "Query planner A/B"):

* a param or metric order is two selects, the runs holding a value in index order and then
  those lacking it (:func:`fetch_rows`); a metric order's range clauses bound its index walk
  (:mod:`registry.query.select`);
* a param order walks the param's distinct values, a group of runs at a time
  (:func:`_present_by_param`);
* param clauses become literal version id lists (:func:`registry.query.compile.make_resolver`);
* on SQLite, filter terms are kept off their indexes when an index serves the order, so the
  order's index is walked and LIMIT stops it (:func:`walk_how`).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from registry.models import VersionParam
from registry.query.compile import How, Resolver, make_resolver, param_present
from registry.query.parse import Key, Node, OrderBy
from registry.query.select import After, select_page

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
    then, if the page is not full, those lacking it.
    """
    versions_of = make_resolver(session)
    how = walk_how(session, versions_of, order)
    if order is None or order.key.kind == "column":
        return list(session.execute(select_page(node, order, limit, after, how=how)).all())
    in_lacking = after is not None and all(v is None for v in after[0])
    rows: list[Any] = []
    if not in_lacking and order.key.kind == "param":
        rows = _present_by_param(session, how, node, order, limit, after)
    elif not in_lacking:
        rows = list(session.execute(select_page(node, order, limit, after, "present", how)).all())
    if len(rows) < limit:
        rest = after if in_lacking else None
        plain = How(versions=versions_of)
        rows += session.execute(select_page(node, order, limit - len(rows), rest, "lacking", plain))
    return rows


def walk_how(session: Session, versions_of: Resolver, order: OrderBy | None) -> How:
    """How a page's filter compiles: param clauses as version lists (``versions_of``) and, on
    SQLite when an index serves the order, with no filter term able to use an index.

    SQLite keeps no statistics unless someone runs ANALYZE, and without them it drives from
    an indexed filter term and sorts all it finds (2.6 s instead of 49 ms for a page of
    ``params.model.model_dim IN (128, 1024) AND NOT status = 'failed'`` by ``created_at DESC``
    at 1M runs); walking the order's index, LIMIT stops it after a page of matches.
    PostgreSQL plans from its statistics and is left to."""
    sqlite = session.get_bind().dialect.name == "sqlite"
    ordered = order is None or order.key.kind != "column" or order.key.name in _INDEXED_ORDERS
    return How(sqlite and ordered, versions_of)


def _present_by_param(
    session: Session,
    how: How,
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
    LIMIT stopping early: a few small selects. After GROUP_WALK values, or past the values
    read, one select sorts the rest."""
    groups, truncated = _param_groups(session, order)
    start = 0
    if after is not None:
        start = next((i for i, (value, _) in enumerate(groups) if value == after[0]), -1)
    if start < 0 or not groups:  # a cursor past the values read
        return list(session.execute(select_page(node, order, limit, after, "present", how)).all())
    by_id = OrderBy(Key("column", "id"), order.descending)
    rows: list[Any] = []
    walked = groups[start : start + GROUP_WALK]
    for i, (value, version_ids) in enumerate(walked):
        within = ([after[1]], after[1]) if i == 0 and after is not None else None
        page = select_page(node, by_id, limit - len(rows), within, how=how, versions=version_ids)
        rows += [(run, *value) for run, _id in session.execute(page).all()]
        if len(rows) >= limit:
            return rows
    if start + len(walked) < len(groups) or truncated:
        rest: After = (walked[-1][0], None)  # past every run of the last walked value
        rows += session.execute(select_page(node, order, limit - len(rows), rest, "present", how))
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
