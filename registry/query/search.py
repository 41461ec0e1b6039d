"""Search runs with the filter language: one page of runs and the cursor of the next.

The entry point of the query modules:

* :mod:`registry.query.lex` and :mod:`registry.query.parse`: text to an immutable AST;
* :mod:`registry.query.compile`: the AST to SQLAlchemy boolean expressions;
* :mod:`registry.query.select`: one select of a page (the order's join, the keyset bound);
* :mod:`registry.query.plan`: the plan of each select and the selects a page takes;
* this module: :func:`search_runs`, the page limit (:func:`check_limit`) and cursors.

Pagination is keyset: the cursor carries the last row's sort values and id.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Collection, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, joinedload
from sqlalchemy.orm.attributes import set_committed_value

from registry.document.parse import parse_json
from registry.errors import BadRequest, DocumentParseError
from registry.models import ConfigVersion, Run
from registry.query.compile import INT64
from registry.query.parse import COLUMN_KEYS, And, Node, OrderBy, parse, parse_order_by
from registry.query.plan import fetch_rows
from registry.query.select import select_page

#: The largest page a search answers.
MAX_LIMIT = 1000


class InvalidCursor(BadRequest):
    """The cursor is not one this query gave out."""

    code = "invalid_cursor"


def search_runs(
    session: Session,
    filter: str | None,
    order_by: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
    *,
    param_paths: Collection[str] | None = None,
    planned: bool = True,
    where: Node | None = None,
) -> tuple[list[Run], str | None]:
    """One page of runs matching ``filter``, and the cursor of the next page (None at the end).

    Raises FilterParseError (400) for a bad filter or order_by, InvalidCursor for a bad
    cursor, BadRequest for a limit outside 1..MAX_LIMIT. The runs come with their versions
    and configs attached (:func:`preload_versions`). ``planned=False`` runs the plain
    compiled query instead of the planner's selects (the same page; for benchmarks and tests).
    ``where``: a syntax tree ANDed with ``filter`` (built by callers, never spliced as text).
    """
    check_limit(limit)
    node = parse(filter, param_paths=param_paths) if filter and filter.strip() else None
    if where is not None:
        node = where if node is None else And((where, node))
    order = parse_order_by(order_by, param_paths=param_paths) if order_by else None
    after = decode_cursor(cursor, order) if cursor else None
    if planned:
        rows = fetch_rows(session, node, order, limit + 1, after)
    else:
        rows = list(session.execute(select_page(node, order, limit + 1, after)).all())
    runs = [row[0] for row in rows[:limit]]
    preload_versions(session, runs)
    if len(rows) <= limit:
        return runs, None
    last = rows[limit - 1]
    return runs, encode_cursor(order, list(last[1:]), last[0].id)


def preload_versions(session: Session, runs: Sequence[Run]) -> None:
    """Load the versions and configs of ``runs`` in one query and attach them to the runs, so
    that reading ``run.version.config`` (as every caller shows a run) costs no query per run.
    (Only loading them is not enough: the identity map holds objects weakly.)"""
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


def check_limit(limit: int) -> int:
    """``limit`` when it is a page size this package serves (1..MAX_LIMIT), else BadRequest."""
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    return limit


# --- the cursor ------------------------------------------------------------------------------


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
        data = parse_json(raw.decode("utf-8"))  # strict: no NaN, no deep nesting
        values, last_id = data["v"], data["id"]
        ok = data["o"] == _signature(order) and isinstance(values, list)
        ok = ok and type(last_id) is int and abs(last_id) < INT64  # not True, not 2**70
    except (ValueError, TypeError, KeyError, binascii.Error, DocumentParseError):
        raise InvalidCursor() from None
    if not ok or len(values) != (2 if order and order.key.kind == "param" else 1 if order else 0):
        raise InvalidCursor()
    if any(isinstance(v, int) and abs(v) >= INT64 for v in values):  # no database binds it
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
