"""Compile the filter language (:mod:`registry.query_parse`) to one SQLAlchemy select over runs.

Only bound parameters carry user values; keys are looked up in fixed tables, never spliced.
Params and metrics are tested with ``IN (SELECT ... FROM version_params|run_metrics WHERE
key = :k AND num|text|value op :v)``, which the ``(key, num|text|value, id)`` indexes answer
on SQLite and PostgreSQL.

Logic is two-valued: a comparison on a key a run lacks (or holds as null) is false, and
``NOT x`` is exactly the runs ``x`` does not match, those lacking the key included.
Pagination is keyset: the cursor carries the last row's sort values and id.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import operator
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, aliased, joinedload
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

from registry.errors import BadRequest
from registry.models import Config, ConfigVersion, Run, RunMetric, VersionParam
from registry.query_parse import (
    COLUMN_KEYS,
    And,
    Compare,
    In,
    Key,
    Node,
    Not,
    Or,
    OrderBy,
    Value,
    parse,
    parse_order_by,
)

MAX_LIMIT = 1000
_INT64 = 2**63

_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

_COLUMNS: dict[str, Any] = {
    "id": Run.id,
    "status": Run.status,
    "config": Config.name,
    "version": ConfigVersion.version,
    "config_hash": ConfigVersion.hash,
    "kind": Run.kind,
    "queue": Run.queue,
    "worker": Run.worker_id,
    "attempt": Run.attempt,
    "seed": Run.seed,
    "created_at": Run.created_at,
    "reproduces": Run.reproduces,
    "reproduced": Run.reproduced,
    "identical": Run.identical,
    "provenance_complete": Run.provenance_complete,
}
assert _COLUMNS.keys() == COLUMN_KEYS.keys()


class InvalidCursor(BadRequest):
    """The cursor is not one this query gave out."""

    code = "invalid_cursor"


# --- filters ---------------------------------------------------------------------------------


class _NoIndex(ColumnElement[Any]):
    """``+column`` on SQLite (``column + 0`` for numbers on PostgreSQL): the same value, but
    the planner cannot use an index for a term or an order on it (SQLite's documented way to
    steer it), so another term drives the query."""

    inherit_cache = True
    _traverse_internals = [("col", InternalTraversal.dp_clauseelement)]

    def __init__(self, col: Any) -> None:
        self.col = col
        self.type = col.type


@compiles(_NoIndex)
def _compile_plain(element: _NoIndex, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.col, **kw))


@compiles(_NoIndex, "sqlite")
def _compile_unary_plus(element: _NoIndex, compiler: Any, **kw: Any) -> str:
    return "+" + str(compiler.process(element.col, **kw))


@compiles(_NoIndex, "postgresql")
def _compile_plus_zero(element: _NoIndex, compiler: Any, **kw: Any) -> str:
    # Only orders are wrapped on PostgreSQL: ``x + 0`` sorts as ``x`` but no index serves it.
    inner = str(compiler.process(element.col, **kw))
    numeric = isinstance(element.type, sa.Integer | sa.Float | sa.Numeric)
    return f"({inner} + 0)" if numeric else inner


def _wrap(col: Any, hint: bool) -> Any:
    return _NoIndex(col) if hint else col


#: Resolves a param clause to the ids of the versions it matches (None: too many to list).
Resolver = Callable[[str, ColumnElement[bool]], "list[int] | None"]


@dataclass(frozen=True)
class _How:
    """How a filter compiles. ``hint`` (SQLite): no term can drive the query through an index
    (columns wrapped by :class:`_NoIndex`, metric clauses as correlated EXISTS probes of the
    run's own metric row), so the order's index or a driving term chosen by :func:`_plan`
    decides the access path, not SQLite's statistics-free guess. ``versions``: param clauses
    become literal lists of version ids, resolved first, which both planners size exactly
    (PostgreSQL cannot size ``key = k AND text = v`` on version_params: the columns
    correlate)."""

    hint: bool = False
    versions: Resolver | None = None


_PLAIN = _How()


def compile_filter(node: Node, how: _How = _PLAIN) -> ColumnElement[bool]:
    """The WHERE clause of ``node``; never NULL, so NOT is plain negation."""
    if isinstance(node, And):
        return sa.and_(*(compile_filter(n, how) for n in node.items))
    if isinstance(node, Or):
        return sa.or_(*(compile_filter(n, how) for n in node.items))
    if isinstance(node, Not):
        return sa.not_(compile_filter(node.item, how))
    if isinstance(node, In):
        matched = _compile_in(node.key, node.values, how)
        return sa.not_(matched) if node.negated else matched
    if node.op == "NOT LIKE":
        return sa.not_(_compile_compare(node.key, "LIKE", node.value, how))
    return _compile_compare(node.key, node.op, node.value, how)


def _compile_compare(key: Key, op: str, value: Value, how: _How = _PLAIN) -> ColumnElement[bool]:
    if key.kind == "column":
        return _column_compare(key.name, op, value, how.hint)
    if key.kind == "metric":
        if value is None:
            present = RunMetric.key == key.name
            found = _metric_in(present, how.hint)
            return found if op == "!=" else sa.not_(found)
        return _metric_in(
            sa.and_(RunMetric.key == key.name, _OPS[op](RunMetric.value, _float(value))), how.hint
        )
    if value is None:
        present = sa.or_(VersionParam.num.is_not(None), VersionParam.text.is_not(None))
        found = _param_in(key.name, present, how)
        return found if op == "!=" else sa.not_(found)
    return _param_in(key.name, _param_test(op, value), how)


def _param_test(op: str, value: Value) -> ColumnElement[bool]:
    if op == "LIKE":
        return VersionParam.text.ilike(value, escape="\\")
    if isinstance(value, bool):
        return _OPS[op](VersionParam.text, "true" if value else "false")
    if isinstance(value, int | float):
        return _OPS[op](VersionParam.num, _float(value))
    return _OPS[op](VersionParam.text, value)


def _column_compare(name: str, op: str, value: Value, hint: bool = False) -> ColumnElement[bool]:
    col = _wrap(_COLUMNS[name], hint)
    kind, nullable = COLUMN_KEYS[name]
    if value is None:
        return col.is_(None) if op == "=" else col.is_not(None)
    if op == "LIKE":
        test = col.ilike(value, escape="\\")
    elif kind == "int":
        test = _OPS[op](col, _int_or_float(value))
    else:
        test = _OPS[op](col, value)
    # FALSE AND NULL is FALSE: a nullable column never makes the clause NULL.
    return sa.and_(col.is_not(None), test) if nullable else test


def _compile_in(key: Key, values: tuple[Value, ...], how: _How = _PLAIN) -> ColumnElement[bool]:
    present = [v for v in values if v is not None]
    parts: list[ColumnElement[bool]] = []
    if None in values:
        parts.append(_compile_compare(key, "=", None, how))
    if present and key.kind == "column":
        col = _wrap(_COLUMNS[key.name], how.hint)
        kind, nullable = COLUMN_KEYS[key.name]
        bound = [_int_or_float(v) for v in present] if kind == "int" else present
        test = col.in_(bound)
        parts.append(sa.and_(col.is_not(None), test) if nullable else test)
    elif present and key.kind == "metric":
        nums = [_float(v) for v in present]
        parts.append(
            _metric_in(sa.and_(RunMetric.key == key.name, RunMetric.value.in_(nums)), how.hint)
        )
    elif present:
        parts.append(_param_in(key.name, _param_in_test(present), how))
    return sa.or_(*parts)


def _param_in_test(values: Sequence[Value]) -> ColumnElement[bool]:
    texts = [_text(v) for v in values if isinstance(v, str | bool)]
    nums = [_float(v) for v in values if not isinstance(v, str | bool)]
    tests = []
    if nums:
        tests.append(VersionParam.num.in_(nums))
    if texts:
        tests.append(VersionParam.text.in_(texts))
    return sa.or_(*tests)


def _param_sub(path: str, test: ColumnElement[bool]) -> Any:
    return sa.select(VersionParam.version_id).where(VersionParam.key == path, test)


def _param_in(path: str, test: ColumnElement[bool], how: _How = _PLAIN) -> ColumnElement[bool]:
    col = _wrap(Run.config_version_id, how.hint)
    ids = how.versions(path, test) if how.versions is not None else None
    return col.in_(ids) if ids is not None else col.in_(_param_sub(path, test))


#: A param clause matching more versions than this stays a subquery.
MAX_LISTED_VERSIONS = 1000


def _resolver(session: Session) -> Resolver:
    """Resolve param clauses to version ids with ``session``, each distinct clause once."""
    found: dict[tuple[str, str], list[int] | None] = {}

    def versions(path: str, test: ColumnElement[bool]) -> list[int] | None:
        key = (path, str(test.compile(compile_kwargs={"literal_binds": True})))
        if key not in found:
            sub = _param_sub(path, test).order_by(VersionParam.version_id)
            ids = list(session.scalars(sub.limit(MAX_LISTED_VERSIONS + 1)))
            found[key] = ids if len(ids) <= MAX_LISTED_VERSIONS else None
        return found[key]

    return versions


def _metric_in(test: ColumnElement[bool], hint: bool = False) -> ColumnElement[bool]:
    if hint:  # a primary-key probe of (run_id, key) per candidate run, not a list of them all
        return sa.exists().where(RunMetric.run_id == Run.id, test)
    return Run.id.in_(sa.select(RunMetric.run_id).where(test))


def _float(value: Value) -> ColumnElement[float]:
    assert isinstance(value, int | float)
    return sa.literal(float(value), sa.Float)


def _int_or_float(value: Value) -> Any:
    # An integral value binds as an integer so the integer column's index stays usable.
    assert isinstance(value, int | float) and not isinstance(value, bool)
    if float(value).is_integer() and abs(value) < _INT64:
        return int(value)
    return sa.literal(float(value), sa.Float)


def _text(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    assert isinstance(value, str)
    return value


# --- ordering and the cursor -----------------------------------------------------------------


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


def _sort(order: OrderBy | None, part: str, driven: bool = False) -> _Sort:
    """The sort of ``order``; ``part`` is ``all`` (outer join), ``present`` (inner join, the
    runs holding a value) or ``lacking`` (the others, by id; null sort values).

    ``driven`` (SQLite, when a selective term drives the query): the sort's index must not
    serve the order, so SQLite reaches the few candidate runs first and sorts them.
    """
    if order is None:
        return _Sort([], lambda s: s, _wrap(Run.id, driven))
    key = order.key
    if key.kind == "column":
        col = _wrap(_COLUMNS[key.name], driven)
        return _Sort([col], lambda s: s, _wrap(Run.id, driven), COLUMN_KEYS[key.name][1])
    if part == "lacking":
        return _Sort([], lambda s: s.where(_lacking(key)))
    if key.kind == "metric":
        rm = aliased(RunMetric)
        on = sa.and_(rm.run_id == Run.id, _wrap(rm.key, driven) == key.name)
        if part == "present":
            # value is NOT NULL and run_id = runs.id: the (key, value, run_id) index is the order.
            value = _wrap(rm.value, driven)
            return _Sort([value], lambda s: s.join(rm, on), rm.run_id, nullable=False)
        return _Sort([rm.value], lambda s: s.outerjoin(rm, on))
    vp = aliased(VersionParam)
    on = sa.and_(vp.version_id == Run.config_version_id, _wrap(vp.key, driven) == key.name)
    if part == "present":
        on = sa.and_(on, sa.or_(vp.num.is_not(None), vp.text.is_not(None)))
        return _Sort([vp.num, vp.text], lambda s: s.join(vp, on))
    return _Sort([vp.num, vp.text], lambda s: s.outerjoin(vp, on))


def _lacking(key: Key) -> ColumnElement[bool]:
    """The runs holding no value for a param or metric key (an anti-join, so LIMIT stops it)."""
    if key.kind == "metric":
        return ~sa.exists().where(RunMetric.run_id == Run.id, RunMetric.key == key.name)
    return ~sa.exists().where(
        VersionParam.version_id == Run.config_version_id,
        VersionParam.key == key.name,
        sa.or_(VersionParam.num.is_not(None), VersionParam.text.is_not(None)),
    )


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


def _items(node: Node | None) -> tuple[Node, ...]:
    """The clauses of ``node``'s top-level AND (``node`` alone when it is not an AND)."""
    return node.items if isinstance(node, And) else (node,) if node is not None else ()


def _pushed(node: Node | None, key: Key) -> list[Compare]:
    """The top-level AND's range tests on the metric ``key``."""
    return [
        n
        for n in _items(node)
        if isinstance(n, Compare) and n.key == key and n.op in ("<", "<=", ">", ">=", "=")
        and n.value is not None
    ]


def _pushdown(node: Node | None, key: Key, expr: Any) -> list[ColumnElement[bool]]:
    """Range tests of ``node``'s top-level AND on the metric ``key``, restated on the sort
    column ``expr`` so the ordered index scan starts and stops where they say."""
    return [_OPS[n.op](expr, _float(n.value)) for n in _pushed(node, key)]


def _param_item(item: Node) -> tuple[str, ColumnElement[bool]] | None:
    """(path, version_params test) of a clause every matching run's version passes, or None."""
    if isinstance(item, Compare) and item.key.kind == "param" and item.op != "NOT LIKE":
        if item.value is not None:
            return item.key.name, _param_test(item.op, item.value)
        if item.op == "!=":
            return item.key.name, sa.or_(VersionParam.num.is_not(None),
                                         VersionParam.text.is_not(None))
    if isinstance(item, In) and item.key.kind == "param" and not item.negated:
        if None not in item.values:
            return item.key.name, _param_in_test(list(item.values))
    return None


def _merge_params(node: Node | None, how: _How) -> tuple[list[int] | None, Node | None]:
    """The top-level AND's param clauses as one list of the versions passing them all (what
    a planner sizes right; several lists it multiplies as if independent), and the rest."""
    if how.versions is None:
        return None, node
    merged: set[int] | None = None
    used: list[Node] = []
    for item in _items(node):
        if (found := _param_item(item)) is not None:
            ids = how.versions(*found)
            if ids is not None:
                merged = set(ids) if merged is None else merged & set(ids)
                used.append(item)
    if merged is None:
        return None, node
    rest = tuple(n for n in _items(node) if not any(n is u for u in used))
    return sorted(merged), None if not rest else rest[0] if len(rest) == 1 else And(rest)


def _without(node: Node | None, drop: list[Compare]) -> Node | None:
    """``node`` less the top-level AND clauses in ``drop`` (restated on the joined sort row,
    where they are the same test: testing them again would build a list of every run)."""
    if not drop:
        return node
    rest = tuple(n for n in _items(node) if not any(n is d for d in drop))
    return None if not rest else rest[0] if len(rest) == 1 else And(rest)


def _after(
    sort: _Sort, values: list[Any], last_id: int | None, desc: bool
) -> ColumnElement[bool]:
    """Rows strictly after (values, last_id) in the order: each value NULLS LAST, then id.
    ``last_id`` None: strictly after ``values``, past all their ties."""
    id_col = sort.id_col
    cond: ColumnElement[bool]
    if last_id is None:
        cond = sa.false()
    else:
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


def _signature(order: OrderBy | None) -> str:
    if order is None:
        return "id"
    return f"{order.key.kind}:{order.key.name}:{'desc' if order.descending else 'asc'}"


def encode_cursor(order: OrderBy | None, values: list[Any], last_id: int) -> str:
    """An opaque cursor for the row after (values, last_id)."""
    plain = [v.isoformat() if isinstance(v, dt.datetime) else v for v in values]
    raw = json.dumps({"o": _signature(order), "v": plain, "id": last_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, order: OrderBy | None) -> tuple[list[Any], int]:
    """The (values, id) in ``cursor``, or :class:`InvalidCursor`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        values, last_id = data["v"], data["id"]
        ok = data["o"] == _signature(order) and isinstance(values, list)
        ok = ok and isinstance(last_id, int) and abs(last_id) < _INT64
    except (ValueError, TypeError, KeyError, binascii.Error):
        raise InvalidCursor() from None
    if not ok or len(values) != (2 if order and order.key.kind == "param" else 1 if order else 0):
        raise InvalidCursor()
    if order is not None and order.key.kind == "column":
        values = [_cursor_value(order.key.name, values[0])]
    elif not all(v is None or isinstance(v, int | float | str) for v in values):
        raise InvalidCursor()
    return values, last_id


def _cursor_value(name: str, value: Any) -> Any:
    kind = COLUMN_KEYS[name][0]
    if value is None:
        return None
    try:
        if kind == "datetime":
            return dt.datetime.fromisoformat(value)
        checks = {"int": int, "bool": bool, "text": str}
        if isinstance(value, checks[kind]) and (kind == "bool") == isinstance(value, bool):
            return value
    except (TypeError, ValueError):
        pass
    raise InvalidCursor()


# --- the query -------------------------------------------------------------------------------


def build_query(
    filter: str | None,
    order_by: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
    *,
    param_paths: Collection[str] | None = None,
) -> sa.Select[Any]:
    """``SELECT runs, <sort values>`` matching ``filter`` in ``order_by`` order, one page.

    Raises FilterParseError (400) for a bad filter or order_by, InvalidCursor for a bad
    cursor, BadRequest for a limit outside 1..MAX_LIMIT.
    """
    _check_limit(limit)
    node = parse(filter, param_paths=param_paths) if filter and filter.strip() else None
    order = parse_order_by(order_by, param_paths=param_paths) if order_by else None
    after = decode_cursor(cursor, order) if cursor else None
    return _select(node, order, limit, after)


@dataclass(frozen=True)
class _Plan:
    """How one select is shaped: how its filter compiles, and (SQLite) the term that drives it.

    With ``how.hint``, no filter term may use an index, so either ``driver`` (a selective term,
    repeated as a plain WHERE term) reaches the candidate runs and they are sorted, or, with
    no driver, the order's own index is walked and LIMIT stops it early. Without it the
    database's planner decides (PostgreSQL's, with statistics and literal version lists,
    does well)."""

    how: _How = _PLAIN
    driver: ColumnElement[bool] | None = None


_DEFAULT = _Plan()


def _select(
    node: Node | None,
    order: OrderBy | None,
    limit: int,
    after: tuple[list[Any], int | None] | None,
    part: str = "all",
    plan: _Plan = _DEFAULT,
    versions: list[int] | None = None,
) -> Any:
    """One select; ``part`` is ``all``, or for a param/metric order ``present`` or ``lacking``;
    ``versions`` limits it to the runs of those config versions."""
    desc = bool(order and order.descending)
    sort = _sort(order, part, driven=plan.driver is not None)
    width = 2 if order and order.key.kind == "param" else 1 if order else 0
    query = sort.join(sa.select(Run, *(sort.exprs or [sa.null()] * width)))
    if _uses(node, order, {"config", "version", "config_hash"}):
        query = query.join(ConfigVersion, ConfigVersion.id == Run.config_version_id)
    if _uses(node, order, {"config"}):
        query = query.join(Config, Config.id == ConfigVersion.config_id)
    pushed: list[Compare] = []
    if part == "present" and order is not None and order.key.kind == "metric":
        pushed = _pushed(node, order.key)
        query = query.where(*_pushdown(node, order.key, sort.exprs[0]))
    rest = _without(node, pushed)
    version_ids, rest = _merge_params(rest, plan.how)
    if version_ids is not None:
        query = query.where(_wrap(Run.config_version_id, plan.how.hint).in_(version_ids))
    if rest is not None:
        query = query.where(compile_filter(rest, plan.how))
    if plan.driver is not None:
        query = query.where(plan.driver)
    if versions is not None:
        query = query.where(_wrap(Run.config_version_id, plan.how.hint).in_(versions))
    if after is not None:
        values, last_id = after
        query = query.where(_after(sort, values[: len(sort.exprs)], last_id, desc))
    ordering = [e.desc() if desc else e.asc() for e in sort.exprs]
    if sort.nullable:
        ordering = [o.nulls_last() for o in ordering]
    ordering.append(sort.id_col.desc() if desc else sort.id_col.asc())
    return query.order_by(*ordering).limit(limit)


def _fetch(
    session: Session, node: Node | None, order: OrderBy | None, limit: int, cursor: str | None
) -> list[Any]:
    """Up to ``limit`` rows ``(run, *sort values)``.

    A param or metric order runs as two selects: the runs holding a value, inner-joined to
    the index row so the (key, value, id) index yields them in order and LIMIT stops early;
    then, if the page is not full and the filter lets such runs through, those lacking it.
    """
    after = decode_cursor(cursor, order) if cursor else None
    if session.get_bind().dialect.name == "postgresql":
        # A page is a few milliseconds of index walking; starting parallel workers costs more
        # (20 ms of latency measured at 100k runs on 2 cores). For this transaction only.
        session.execute(sa.text("SET LOCAL max_parallel_workers_per_gather = 0"))
    versions_of = _resolver(session)
    if order is None or order.key.kind == "column":
        plan = _plan(session, versions_of, node, order, limit)
        return list(session.execute(_select(node, order, limit, after, plan=plan)).all())
    in_lacking = after is not None and all(v is None for v in after[0])
    rows: list[Any] = []
    if not in_lacking and order.key.kind == "param":
        rows = _present_by_param(session, versions_of, node, order, limit, after)
    elif not in_lacking:
        plan = _plan(session, versions_of, node, order, limit)
        rows = list(session.execute(_select(node, order, limit, after, "present", plan)).all())
    plain = _Plan(_How(versions=versions_of))
    if len(rows) < limit and not _requires(node, order.key):
        rest = after if in_lacking else None
        lacking = _select(node, order, limit - len(rows), rest, "lacking", plain)
        rows += session.execute(lacking).all()
    return rows


#: A param order walks at most this many groups of runs sharing a value one at a time.
GROUP_WALK = 8
#: Rows of (value, version) a param order reads to form its groups.
GROUP_ROWS = 2000


def _present_by_param(
    session: Session, versions_of: Resolver, node: Node | None, order: OrderBy, limit: int,
    after: tuple[list[Any], int] | None,
) -> list[Any]:
    """The runs holding a value of the param ``order`` sorts by, in order: ``(run, num, text)``.

    Runs sharing a value tie, and ties break on id, so one select must read and sort every
    run of the first values' versions (tens of thousands when a value is common). Instead,
    walk the distinct values in order (a few hundred rows of version_params) and, for each,
    the runs of its versions by id, which an index (or SQLite's rowid) yields in order, with
    LIMIT stopping early: a few small selects. After GROUP_WALK values, one select sorts the
    rest."""
    vp = VersionParam
    desc = order.descending
    present = sa.or_(vp.num.is_not(None), vp.text.is_not(None))
    ordering = [(c.desc() if desc else c.asc()).nulls_last() for c in (vp.num, vp.text)]
    found = session.execute(
        sa.select(vp.num, vp.text, vp.version_id)
        .where(vp.key == order.key.name, present)
        .order_by(*ordering, vp.version_id)
        .limit(GROUP_ROWS + 1)
    ).all()
    groups: list[tuple[list[Any], list[int]]] = []
    for num, text, version_id in found:
        if groups and groups[-1][0] == [num, text]:
            groups[-1][1].append(version_id)
        else:
            groups.append(([num, text], [version_id]))
    if len(found) > GROUP_ROWS:
        groups.pop()  # it may lack versions
    start = 0
    if after is not None:
        start = next((i for i, (value, _) in enumerate(groups) if value == after[0]), -1)
    if start < 0 or not groups:
        plan = _plan(session, versions_of, node, order, limit)
        return list(session.execute(_select(node, order, limit, after, "present", plan)).all())
    by_id = OrderBy(Key("column", "id"), desc)
    rows: list[Any] = []
    walked = groups[start : start + GROUP_WALK]
    for i, (value, version_ids) in enumerate(walked):
        term = Run.config_version_id.in_(version_ids)
        plan = _plan(session, versions_of, node, by_id, limit - len(rows), extra=term)
        within = ([after[1]], after[1]) if i == 0 and after is not None else None
        page = _select(node, by_id, limit - len(rows), within, plan=plan, versions=version_ids)
        rows += [(run, *value) for run, _id in session.execute(page).all()]
        if len(rows) >= limit:
            return rows
    if start + len(walked) < len(groups) or len(found) > GROUP_ROWS:
        plan = _plan(session, versions_of, node, order, limit - len(rows))
        rest = (walked[-1][0], None)  # past every run of the last walked value
        rows += session.execute(_select(node, order, limit - len(rows), rest, "present", plan))
    return rows


#: Candidate runs counted, at most, to size a driving term (an index-only count).
COUNT_CAP = 5000
#: Column orders an index serves (ids are SQLite's rowids).
_INDEXED_ORDERS = frozenset({"id", "created_at"})


def _plan(
    session: Session, versions_of: Resolver, node: Node | None, order: OrderBy | None,
    limit: int, extra: ColumnElement[bool] | None = None,
) -> _Plan:
    """The plan of one page. Param clauses are resolved to version ids on both databases.

    Then choose between walking the order's index (LIMIT stops it early) and driving from
    the most selective top-level term, by counting each candidate term's runs up to a cap in
    one statement. Walking the order costs about ``limit / selectivity`` probes, driving about
    ``matches`` rows and a sort: drive when a term matches fewer than ``sqrt(limit * runs)``
    runs. SQLite keeps no statistics unless someone runs ANALYZE, and even then cannot size
    an ``IN (SELECT ...)`` list, so it is told both ways (:class:`_NoIndex`). PostgreSQL
    plans well from its statistics, except when the filter correlates with the order (runs
    with ``temperature = 0.7`` sit in the middle of ``gen_distinct_2`` order, not spread
    through it): it is only told to drive, by an order no index serves."""
    if node is None and extra is None:
        return _DEFAULT
    sqlite = session.get_bind().dialect.name == "sqlite"
    hinted, plain = _How(sqlite, versions_of), _How(False, versions_of)
    ordered = order is None or order.key.kind != "column" or order.key.name in _INDEXED_ORDERS
    sort_metric = order.key if order is not None and order.key.kind == "metric" else None
    drivers: list[tuple[ColumnElement[bool], Any]] = []  # (driving term, the ids it selects)
    if extra is not None:
        drivers.append((extra, sa.select(Run.id).where(extra)))
    versions = [sub for item in _items(node) if (sub := _version_sub(item)) is not None]
    if versions:
        matched: Any = versions[0]
        if len(versions) > 1:
            matched = sa.intersect(*versions)
        term = Run.config_version_id.in_(matched)
        drivers.append((term, sa.select(Run.id).where(term)))
    for item in _items(node):
        if sort_metric is not None and getattr(item, "key", None) == sort_metric:
            continue  # the ordered walk of the sort metric's index covers these
        if (test := _metric_test(item)) is not None:
            ids = sa.select(RunMetric.run_id).where(test)
            drivers.append((Run.id.in_(ids), ids))
        if (statuses := _status_values(item)) is not None:
            term = Run.status.in_(statuses)
            drivers.append((term, sa.select(Run.id).where(term)))
    ranged = None
    if sort_metric is not None and (tests := _pushdown(node, sort_metric, RunMetric.value)):
        ranged = sa.select(RunMetric.run_id).where(RunMetric.key == sort_metric.name, *tests)
    counted = [ids for _, ids in drivers] + ([ranged] if ranged is not None else [])
    if not counted:
        return _Plan(hinted if ordered else plain)
    total = sa.select(sa.func.max(Run.id)).scalar_subquery()
    capped = [
        sa.select(sa.func.count()).select_from(ids.limit(COUNT_CAP).subquery()).scalar_subquery()
        for ids in counted
    ]
    runs, *counts = session.execute(sa.select(total, *capped)).one()
    threshold = min(COUNT_CAP, max(1.0, ((limit + 1) * (runs or 0)) ** 0.5))
    if ranged is not None and counts[-1] < threshold:
        return _Plan(hinted)  # the order's own range is short: walk it
    if drivers:
        best = min(range(len(drivers)), key=lambda i: counts[i])
        if counts[best] < threshold:
            # PostgreSQL picks the driving term itself once the order cannot come from an index.
            return _Plan(hinted, drivers[best][0] if sqlite else sa.true())
    return _Plan(hinted if ordered else plain)


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
            return _param_sub(key.name, _param_in_test(list(item.values)))
        if value is None:
            if op != "!=":
                return None
            test = sa.or_(VersionParam.num.is_not(None), VersionParam.text.is_not(None))
        else:
            test = _param_test(op, value)
        return _param_sub(key.name, test)
    if key.kind == "column" and key.name in ("config", "version", "config_hash"):
        if isinstance(item, In):
            test = _compile_in(key, item.values)
        elif value is None:
            return None
        else:
            test = _column_compare(key.name, op, value)
        sub = sa.select(ConfigVersion.id)
        if key.name == "config":
            sub = sub.join(Config, Config.id == ConfigVersion.config_id)
        return sub.where(test)
    return None


def _metric_test(item: Node) -> ColumnElement[bool] | None:
    """The ``run_metrics`` rows a run matching ``item`` must hold, or None."""
    if isinstance(item, Compare) and item.key.kind == "metric" and item.op in _OPS:
        if item.value is None:
            return RunMetric.key == item.key.name if item.op == "!=" else None
        return sa.and_(RunMetric.key == item.key.name,
                       _OPS[item.op](RunMetric.value, _float(item.value)))
    if isinstance(item, In) and item.key.kind == "metric" and not item.negated:
        if None in item.values:
            return None
        nums = [_float(v) for v in item.values]
        return sa.and_(RunMetric.key == item.key.name, RunMetric.value.in_(nums))
    return None


def _status_values(item: Node) -> list[str] | None:
    """The statuses a run matching ``item`` has, or None."""
    if isinstance(item, Compare) and item.key == Key("column", "status") and item.op == "=":
        return [str(item.value)]
    if isinstance(item, In) and item.key == Key("column", "status") and not item.negated:
        if None not in item.values:
            return [str(v) for v in item.values]
    return None


def search_runs(
    session: Session,
    filter: str | None,
    order_by: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
    *,
    param_paths: Collection[str] | None = None,
) -> tuple[list[Run], str | None]:
    """One page of runs matching ``filter``, and the cursor of the next page (None at the end)."""
    _check_limit(limit)
    node = parse(filter, param_paths=param_paths) if filter and filter.strip() else None
    order = parse_order_by(order_by, param_paths=param_paths) if order_by else None
    rows = _fetch(session, node, order, limit + 1, cursor)
    runs = [row[0] for row in rows[:limit]]
    _preload_versions(session, runs)
    if len(rows) <= limit:
        return runs, None
    last = rows[limit - 1]
    return runs, encode_cursor(order, list(last[1:]), last[0].id)


def _preload_versions(session: Session, runs: list[Run]) -> None:
    """Load the page's versions and configs in one query and attach them to the runs, so that
    reading ``run.version.config`` (as every caller shows a run) costs no query per run. (Only
    loading them is not enough: the identity map holds objects weakly.)"""
    ids = {r.config_version_id for r in runs}
    if not ids:
        return
    versions = {
        v.id: v
        for v in session.scalars(
            sa.select(ConfigVersion)
            .where(ConfigVersion.id.in_(ids))
            .options(joinedload(ConfigVersion.config, innerjoin=True))
        )
    }
    for run in runs:
        set_committed_value(run, "version", versions[run.config_version_id])


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}", field="limit")


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
