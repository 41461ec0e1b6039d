"""Compile a filter's AST (:mod:`registry.query.parse`) to a SQLAlchemy boolean expression.

Only bound parameters carry user values; keys are looked up in fixed tables, never spliced.
A param clause tests ``runs.config_version_id`` against the versions whose ``version_params``
row passes it: a literal list of their ids when a :data:`Resolver` lists them (what
:mod:`registry.query.plan` does), else ``IN (SELECT version_id FROM version_params WHERE
key = :k AND num|text op :v)``. A metric clause is ``runs.id IN (SELECT run_id FROM
run_metrics WHERE key = :k AND value op :v)``, or a correlated EXISTS probe when hinted. The
``(key, num|text|value, id)`` indexes answer both on SQLite and PostgreSQL.

Logic is two-valued: a comparison on a key a run lacks (or holds as null) is false, and
``NOT x`` is exactly the runs ``x`` does not match, those lacking the key included.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

from registry.models import Config, ConfigVersion, Run, RunMetric, VersionParam
from registry.query.parse import COLUMN_KEYS, And, In, Key, Node, Not, Or, Value

INT64 = 2**63

OPS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

#: The column each plain key (``COLUMN_KEYS``) names.
COLUMNS: dict[str, Any] = {
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
assert COLUMNS.keys() == COLUMN_KEYS.keys()


class _NoIndex(ColumnElement[Any]):
    """``+column`` on SQLite: the same value, but the planner cannot use an index for a term
    on it (SQLite's documented way to steer it), so the order's index is walked instead."""

    inherit_cache = True
    # SQLAlchemy declares this a (list) instance attribute, so it cannot be a ClassVar.
    _traverse_internals = [("col", InternalTraversal.dp_clauseelement)]  # noqa: RUF012

    def __init__(self, col: Any) -> None:
        self.col = col
        self.type = col.type


@compiles(_NoIndex)
def _compile_plain(element: _NoIndex, compiler: Any, **kw: Any) -> str:
    # Only SQLite is hinted; elsewhere (str() of a statement, say) it is the column itself.
    return str(compiler.process(element.col, **kw))


@compiles(_NoIndex, "sqlite")
def _compile_unary_plus(element: _NoIndex, compiler: Any, **kw: Any) -> str:
    return "+" + str(compiler.process(element.col, **kw))


def wrap(col: Any, hint: bool) -> Any:
    """``col``, or with ``hint`` the same value no index serves (:class:`_NoIndex`)."""
    return _NoIndex(col) if hint else col


#: Resolves a param clause to the ids of the versions it matches (None: too many to list).
Resolver = Callable[[str, ColumnElement[bool]], "list[int] | None"]


@dataclass(frozen=True)
class How:
    """How a filter compiles. ``hint`` (SQLite): no term can drive the query through an index
    (columns wrapped by :class:`_NoIndex`, metric clauses as correlated EXISTS probes of the
    run's own metric row), so the order's index is walked (:func:`registry.query.plan.walk_how`),
    not SQLite's statistics-free guess. ``versions``: param clauses become literal lists of
    version ids, resolved first, which PostgreSQL sizes exactly (it cannot size
    ``key = k AND text = v`` on version_params: the columns correlate)."""

    hint: bool = False
    versions: Resolver | None = None


PLAIN = How()


def compile_filter(node: Node, how: How = PLAIN) -> ColumnElement[bool]:
    """The WHERE clause of ``node``; never NULL, so NOT is plain negation."""
    if isinstance(node, And):
        return sa.and_(*(compile_filter(n, how) for n in node.items))
    if isinstance(node, Or):
        return sa.or_(*(compile_filter(n, how) for n in node.items))
    if isinstance(node, Not):
        return sa.not_(compile_filter(node.item, how))
    if isinstance(node, In):
        matched = compile_in(node.key, node.values, how)
        return sa.not_(matched) if node.negated else matched
    if node.op == "NOT LIKE":
        return sa.not_(_compile_compare(node.key, "LIKE", node.value, how))
    return _compile_compare(node.key, node.op, node.value, how)


def _compile_compare(key: Key, op: str, value: Value, how: How = PLAIN) -> ColumnElement[bool]:
    if key.kind == "column":
        return column_compare(key.name, op, value, how.hint)
    if key.kind == "metric":
        if value is None:
            present = RunMetric.key == key.name
            found = _metric_in(present, how.hint)
            return found if op == "!=" else sa.not_(found)
        return _metric_in(
            sa.and_(RunMetric.key == key.name, OPS[op](RunMetric.value, as_float(value))), how.hint
        )
    if value is None:
        found = _param_in(key.name, param_present(), how)
        return found if op == "!=" else sa.not_(found)
    return _param_in(key.name, param_test(op, value), how)


def param_present() -> ColumnElement[bool]:
    """The version_params rows holding a value (not a null leaf)."""
    return sa.or_(VersionParam.num.is_not(None), VersionParam.text.is_not(None))


def param_test(op: str, value: Value) -> ColumnElement[bool]:
    """The version_params rows passing ``op value`` (``value`` not None)."""
    if op == "LIKE":
        return VersionParam.text.ilike(value, escape="\\")
    if isinstance(value, bool):
        return OPS[op](VersionParam.text, "true" if value else "false")
    if isinstance(value, int | float):
        return OPS[op](VersionParam.num, as_float(value))
    return OPS[op](VersionParam.text, value)


def column_compare(name: str, op: str, value: Value, hint: bool = False) -> ColumnElement[bool]:
    """``column op value`` for the plain key ``name``; never NULL."""
    col = wrap(COLUMNS[name], hint)
    kind, nullable = COLUMN_KEYS[name]
    if value is None:
        return col.is_(None) if op == "=" else col.is_not(None)
    if op == "LIKE":
        test = col.ilike(value, escape="\\")
    elif kind == "int":
        test = OPS[op](col, _int_or_float(value))
    else:
        test = OPS[op](col, value)
    # FALSE AND NULL is FALSE: a nullable column never makes the clause NULL.
    return sa.and_(col.is_not(None), test) if nullable else test


def compile_in(key: Key, values: tuple[Value, ...], how: How = PLAIN) -> ColumnElement[bool]:
    """``key IN (values)``; a None among them matches the runs lacking the key."""
    present = [v for v in values if v is not None]
    parts: list[ColumnElement[bool]] = []
    if None in values:
        parts.append(_compile_compare(key, "=", None, how))
    if present and key.kind == "column":
        col = wrap(COLUMNS[key.name], how.hint)
        kind, nullable = COLUMN_KEYS[key.name]
        bound = [_int_or_float(v) for v in present] if kind == "int" else present
        test = col.in_(bound)
        parts.append(sa.and_(col.is_not(None), test) if nullable else test)
    elif present and key.kind == "metric":
        nums = [as_float(v) for v in present]
        parts.append(
            _metric_in(sa.and_(RunMetric.key == key.name, RunMetric.value.in_(nums)), how.hint)
        )
    elif present:
        parts.append(_param_in(key.name, param_in_test(present), how))
    return sa.or_(*parts)


def param_in_test(values: Sequence[Value]) -> ColumnElement[bool]:
    """The version_params rows holding one of ``values`` (none of them None)."""
    texts = [_text(v) for v in values if isinstance(v, str | bool)]
    nums = [as_float(v) for v in values if not isinstance(v, str | bool)]
    tests = []
    if nums:
        tests.append(VersionParam.num.in_(nums))
    if texts:
        tests.append(VersionParam.text.in_(texts))
    return sa.or_(*tests)


def param_sub(path: str, test: ColumnElement[bool]) -> Any:
    """The ids of the versions whose param ``path`` passes ``test``, as a select."""
    return sa.select(VersionParam.version_id).where(VersionParam.key == path, test)


def _param_in(path: str, test: ColumnElement[bool], how: How = PLAIN) -> ColumnElement[bool]:
    col = wrap(Run.config_version_id, how.hint)
    ids = how.versions(path, test) if how.versions is not None else None
    return col.in_(ids) if ids is not None else col.in_(param_sub(path, test))


#: A param clause matching more versions than this stays a subquery.
MAX_LISTED_VERSIONS = 1000


def make_resolver(session: Session) -> Resolver:
    """Resolve param clauses to version ids with ``session``, each distinct clause once."""
    found: dict[tuple[str, str], list[int] | None] = {}

    def versions(path: str, test: ColumnElement[bool]) -> list[int] | None:
        key = (path, str(test.compile(compile_kwargs={"literal_binds": True})))
        if key not in found:
            sub = param_sub(path, test).order_by(VersionParam.version_id)
            ids = list(session.scalars(sub.limit(MAX_LISTED_VERSIONS + 1)))
            found[key] = ids if len(ids) <= MAX_LISTED_VERSIONS else None
        return found[key]

    return versions


def _metric_in(test: ColumnElement[bool], hint: bool = False) -> ColumnElement[bool]:
    if hint:  # a primary-key probe of (run_id, key) per candidate run, not a list of them all
        return sa.exists().where(RunMetric.run_id == Run.id, test)
    return Run.id.in_(sa.select(RunMetric.run_id).where(test))


def as_float(value: Value) -> ColumnElement[float]:
    """A number as a bound float (how params and metrics are stored)."""
    assert isinstance(value, int | float)
    return sa.literal(float(value), sa.Float)


def _int_or_float(value: Value) -> Any:
    # An integral value binds as an integer so the integer column's index stays usable.
    assert isinstance(value, int | float) and not isinstance(value, bool)
    if float(value).is_integer() and abs(value) < INT64:
        return int(value)
    return sa.literal(float(value), sa.Float)


def _text(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    assert isinstance(value, str)
    return value
