"""One select of a page of runs: the filter's WHERE terms, the order's join and keyset bound.

:func:`select_page` builds ``SELECT runs, <sort values>`` for one part of a page. A param or
metric order is two parts: the runs holding a value (``present``, inner-joined to the index
row, so the ``(key, value, id)`` index yields them in order and LIMIT stops early), then those
lacking it (``lacking``, by id). How the filter compiles is a
:class:`registry.query.compile.How`, chosen by :mod:`registry.query.plan`; the default compiles
it plainly, which is the plain compiled query (``search_runs(planned=False)``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from registry.models import Config, ConfigVersion, Run, RunMetric, VersionParam
from registry.query.compile import (
    COLUMNS,
    OPS,
    PLAIN,
    How,
    as_float,
    compile_filter,
    param_in_test,
    param_present,
    param_test,
    wrap,
)
from registry.query.parse import COLUMN_KEYS, And, Compare, In, Key, Node, Not, Or, OrderBy

#: A keyset bound: the last row's sort values and id (None: past all ties of the values).
After = tuple[list[Any], int | None]


def select_page(
    node: Node | None,
    order: OrderBy | None,
    limit: int,
    after: After | None,
    part: str = "all",
    how: How = PLAIN,
    versions: list[int] | None = None,
) -> Any:
    """One select; ``part`` is ``all``, or for a param/metric order ``present`` or ``lacking``;
    ``how`` is how the filter compiles; ``versions`` limits it to the runs of those versions."""
    desc = bool(order and order.descending)
    sort = _sort(order, part)
    width = 2 if order and order.key.kind == "param" else 1 if order else 0
    query = sort.join(sa.select(Run, *(sort.exprs or [sa.null()] * width)))
    if _uses(node, order, {"config", "version", "config_hash"}):
        query = query.join(ConfigVersion, ConfigVersion.id == Run.config_version_id)
    if _uses(node, order, {"config"}):
        query = query.join(Config, Config.id == ConfigVersion.config_id)
    pushed: list[Compare] = []
    if part == "present" and order is not None and order.key.kind == "metric":
        pushed = _pushed(node, order.key)
        query = query.where(*(OPS[n.op](sort.exprs[0], as_float(n.value)) for n in pushed))
    rest = _without(node, pushed)
    version_ids, rest = _merge_params(rest, how)
    if version_ids is not None:
        query = query.where(wrap(Run.config_version_id, how.hint).in_(version_ids))
    if rest is not None:
        query = query.where(compile_filter(rest, how))
    if versions is not None:
        query = query.where(wrap(Run.config_version_id, how.hint).in_(versions))
    if after is not None:
        values, last_id = after
        query = query.where(_after(sort, values[: len(sort.exprs)], last_id, desc))
    return query.order_by(*_ordering(sort, desc)).limit(limit)


@dataclass(frozen=True)
class _Sort:
    """How one select orders: sort expressions, the join bringing them in, the id tie-break."""

    exprs: list[Any]
    join: Callable[[Any], Any]
    id_col: Any = None  # None: runs.id (a mapped attribute cannot be a dataclass default)
    nullable: bool = True

    def __post_init__(self) -> None:
        if self.id_col is None:
            object.__setattr__(self, "id_col", Run.id)


def _sort(order: OrderBy | None, part: str) -> _Sort:
    """The sort of ``order``; ``part`` is ``all`` (outer join), ``present`` (inner join, the
    runs holding a value) or ``lacking`` (the others, by id; null sort values)."""
    if order is None:
        return _Sort([], lambda s: s)
    key = order.key
    if key.kind == "column":
        return _Sort([COLUMNS[key.name]], lambda s: s, nullable=COLUMN_KEYS[key.name][1])
    if part == "lacking":
        return _Sort([], lambda s: s.where(_lacking(key)))
    if key.kind == "metric":
        rm = aliased(RunMetric)
        on = sa.and_(rm.run_id == Run.id, rm.key == key.name)
        if part == "present":
            # value is NOT NULL and run_id = runs.id: the (key, value, run_id) index is the order.
            return _Sort([rm.value], lambda s: s.join(rm, on), rm.run_id, nullable=False)
        return _Sort([rm.value], lambda s: s.outerjoin(rm, on))
    vp = aliased(VersionParam)
    on = sa.and_(vp.version_id == Run.config_version_id, vp.key == key.name)
    if part == "present":
        on = sa.and_(on, sa.or_(vp.num.is_not(None), vp.text.is_not(None)))
        return _Sort([vp.num, vp.text], lambda s: s.join(vp, on))
    return _Sort([vp.num, vp.text], lambda s: s.outerjoin(vp, on))


def _ordering(sort: _Sort, desc: bool) -> list[Any]:
    """ORDER BY the sort values (NULLS LAST where they may be null), then the id."""
    ordering = [e.desc() if desc else e.asc() for e in sort.exprs]
    if sort.nullable:
        ordering = [o.nulls_last() for o in ordering]
    ordering.append(sort.id_col.desc() if desc else sort.id_col.asc())
    return ordering


def _lacking(key: Key) -> ColumnElement[bool]:
    """The runs holding no value for a param or metric key (an anti-join, so LIMIT stops it)."""
    if key.kind == "metric":
        return ~sa.exists().where(RunMetric.run_id == Run.id, RunMetric.key == key.name)
    return ~sa.exists().where(
        VersionParam.version_id == Run.config_version_id,
        VersionParam.key == key.name,
        param_present(),
    )


def _conjuncts(node: Node | None) -> tuple[Node, ...]:
    """The clauses of ``node``'s top-level AND (``node`` alone when it is not an AND)."""
    return node.items if isinstance(node, And) else (node,) if node is not None else ()


def _pushed(node: Node | None, key: Key) -> list[Compare]:
    """The top-level AND's range tests on the metric ``key``: restated on the joined sort row
    (:func:`select_page`), so the ordered index scan starts and stops where they say."""
    return [
        n
        for n in _conjuncts(node)
        if isinstance(n, Compare)
        and n.key == key
        and n.op in ("<", "<=", ">", ">=", "=")
        and n.value is not None
    ]


def _param_item(item: Node) -> tuple[str, ColumnElement[bool]] | None:
    """(path, version_params test) of a clause every matching run's version passes, or None."""
    if isinstance(item, Compare) and item.key.kind == "param" and item.op != "NOT LIKE":
        if item.value is not None:
            return item.key.name, param_test(item.op, item.value)
        if item.op == "!=":
            return item.key.name, param_present()
    if isinstance(item, In) and item.key.kind == "param" and not item.negated:
        return (
            (item.key.name, param_in_test(list(item.values))) if None not in item.values else None
        )
    return None


def _merge_params(node: Node | None, how: How) -> tuple[list[int] | None, Node | None]:
    """The top-level AND's param clauses as one list of the versions passing them all (what
    a planner sizes right; several lists it multiplies as if independent), and the rest."""
    if how.versions is None:
        return None, node
    merged: set[int] | None = None
    used: list[Node] = []
    for item in _conjuncts(node):
        if (found := _param_item(item)) is not None:
            ids = how.versions(*found)
            if ids is not None:
                merged = set(ids) if merged is None else merged & set(ids)
                used.append(item)
    if merged is None:
        return None, node
    rest = tuple(n for n in _conjuncts(node) if not any(n is u for u in used))
    return sorted(merged), None if not rest else rest[0] if len(rest) == 1 else And(rest)


def _without(node: Node | None, drop: list[Compare]) -> Node | None:
    """``node`` less the top-level AND clauses in ``drop`` (restated on the joined sort row,
    where they are the same test: testing them again would build a list of every run)."""
    if not drop:
        return node
    rest = tuple(n for n in _conjuncts(node) if not any(n is d for d in drop))
    return None if not rest else rest[0] if len(rest) == 1 else And(rest)


def _after(sort: _Sort, values: list[Any], last_id: int | None, desc: bool) -> ColumnElement[bool]:
    """Rows strictly after (values, last_id) in the order: each value NULLS LAST, then id.
    ``last_id`` None: strictly after ``values``, past all their ties."""
    id_col = sort.id_col
    cond: ColumnElement[bool] = sa.false()  # past all ties of ``values``
    if last_id is not None:
        cond = id_col < last_id if desc else id_col > last_id
    for expr, value in reversed(list(zip(sort.exprs, values, strict=True))):
        if value is None:
            cond = sa.and_(expr.is_(None), cond)
            continue
        bound = sa.literal(value, expr.type)  # a bound typed value, booleans included
        beyond = expr < bound if desc else expr > bound
        if sort.nullable:
            cond = sa.or_(beyond, expr.is_(None), sa.and_(expr == bound, cond))
        else:  # the leading >= (or <=) is a range the index seeks to
            reach = expr <= bound if desc else expr >= bound
            cond = sa.and_(reach, sa.or_(beyond, sa.and_(expr == bound, cond)))
    return cond


def _uses(node: Node | None, order: OrderBy | None, names: set[str]) -> bool:
    keys = list(_keys(node)) + ([order.key] if order else [])
    return any(k.kind == "column" and k.name in names for k in keys)


def _keys(node: Node | None) -> Iterator[Key]:
    if node is None:
        return
    if isinstance(node, And | Or):
        for item in node.items:
            yield from _keys(item)
    elif isinstance(node, Not):
        yield from _keys(node.item)
    else:
        yield node.key
