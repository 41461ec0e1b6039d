"""The filter language of ``GET /runs``: a hand-written recursive-descent parser over the tokens
of :mod:`registry.query.lex`.

Pure: text in, an immutable AST out, or :class:`FilterParseError` with the 0-based character
position and what was expected there. The grammar (keywords case-insensitive)::

    expr    := or
    or      := and (OR and)*
    and     := unary (AND unary)*
    unary   := NOT unary | '(' or ')' | clause
    clause  := key op value | key [NOT] IN '(' value (',' value)* ')'
    op      := = | != | <> | < | <= | > | >= | LIKE | ILIKE | NOT LIKE
    value   := number | 'string' | "string" | true | false | null
    order   := key [ASC | DESC]

Precedence is NOT > AND > OR. The compiler lives in :mod:`registry.query.compile`, the entry
point (:func:`registry.query.search.search_runs`) in :mod:`registry.query.search`.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from registry.document.fields import param_paths
from registry.errors import FilterParseError
from registry.query.lex import Token, parse_error, tokenize

MAX_LENGTH = 10_000
MAX_DEPTH = 32
#: Each clause is a level of SQLite's expression tree (at most 1,000 deep); people write ten.
MAX_CLAUSES = 100

ColumnType = Literal["text", "int", "bool", "datetime"]

#: The plain keys: name -> (type, nullable). ``registry.query.search`` maps each to a column.
COLUMN_KEYS: dict[str, tuple[ColumnType, bool]] = {
    "id": ("int", False),
    "status": ("text", False),
    "config": ("text", False),
    "version": ("int", False),
    "config_hash": ("text", False),
    "kind": ("text", False),
    "queue": ("text", False),
    "worker": ("text", True),
    "attempt": ("int", False),
    "seed": ("int", False),
    "created_at": ("datetime", False),
    "reproduces": ("int", True),
    "reproduced": ("bool", False),
    "identical": ("bool", True),
    "provenance_complete": ("bool", False),
}

COMPARE_OPS = ("=", "!=", "<", "<=", ">", ">=")
LIKE_OPS = ("LIKE", "NOT LIKE")
KEY_EXPECTED = "a key (params.<path>, metrics.<name>, status, ...)"
KEYWORDS = frozenset({"AND", "OR", "NOT", "IN", "LIKE", "ILIKE", "TRUE", "FALSE", "NULL"})

Value = float | int | str | bool | None | dt.datetime


# --- the AST ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """A filter key: ``param`` (dotted config path), ``metric`` (name) or ``column``."""

    kind: Literal["param", "metric", "column"]
    name: str


@dataclass(frozen=True)
class Compare:
    """``key op value``; ``op`` is one of COMPARE_OPS or LIKE_OPS."""

    key: Key
    op: str
    value: Value


@dataclass(frozen=True)
class In:
    """``key [NOT] IN (values)``."""

    key: Key
    values: tuple[Value, ...]
    negated: bool = False


@dataclass(frozen=True)
class Not:
    """``NOT item``: the runs that ``item`` does not match, those lacking the key included."""

    item: Node


@dataclass(frozen=True)
class And:
    """All of ``items``."""

    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    """Any of ``items``."""

    items: tuple[Node, ...]


Node = Compare | In | Not | And | Or


@dataclass(frozen=True)
class OrderBy:
    """``order_by KEY [ASC|DESC]``."""

    key: Key
    descending: bool = False


# --- the parser ------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str, param_paths: Collection[str]) -> None:
        if len(text) > MAX_LENGTH:
            raise parse_error("expression too long", MAX_LENGTH, f"at most {MAX_LENGTH} characters")
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0
        self.clauses = 0
        self.param_paths = param_paths

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def at_word(self, *words: str) -> bool:
        return self.tok.kind == "word" and self.tok.text.upper() in words

    def expect(self, kind: str, expected: str) -> Token:
        if self.tok.kind != kind:
            raise self.unexpected(expected)
        return self.advance()

    def unexpected(self, expected: str) -> FilterParseError:
        tok = self.tok
        found = "end of the expression" if tok.kind == "end" else repr(tok.text)
        return parse_error(f"unexpected {found}", tok.pos, expected)

    def finish(self, expected: str) -> None:
        if self.tok.kind != "end":
            raise self.unexpected(expected)

    # expr := or
    def parse_or(self) -> Node:
        items = [self.parse_and()]
        while self.at_word("OR"):
            self.advance()
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def parse_and(self) -> Node:
        items = [self.parse_unary()]
        while self.at_word("AND"):
            self.advance()
            items.append(self.parse_unary())
        return items[0] if len(items) == 1 else And(tuple(items))

    def parse_unary(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            pos = self.tok.pos
            raise parse_error("expression nested too deeply", pos, f"at most {MAX_DEPTH} levels")
        try:
            if self.at_word("NOT"):
                self.advance()
                return Not(self.parse_unary())
            if self.tok.kind == "(":
                self.advance()
                node = self.parse_or()
                self.expect(")", "')', AND or OR")
                return node
            return self.parse_clause()
        finally:
            self.depth -= 1

    def parse_clause(self) -> Node:
        self.clauses += 1
        if self.clauses > MAX_CLAUSES:
            expected = f"at most {MAX_CLAUSES} clauses"
            raise parse_error("too many clauses", self.tok.pos, expected)
        key = self.parse_key()
        if self.at_word("NOT"):
            self.advance()
            if self.at_word("IN"):
                self.advance()
                return In(key, self.parse_list(key), negated=True)
            if self.at_word("LIKE", "ILIKE"):
                self.advance()
                return Compare(key, "NOT LIKE", self.parse_value(key, "NOT LIKE"))
            raise self.unexpected("IN or LIKE after NOT")
        if self.at_word("IN"):
            self.advance()
            return In(key, self.parse_list(key))
        if self.at_word("LIKE", "ILIKE"):
            self.advance()
            return Compare(key, "LIKE", self.parse_value(key, "LIKE"))
        if self.tok.kind == "op":
            op = self.advance().text
            return Compare(key, op, self.parse_value(key, op))
        raise self.unexpected("an operator (=, !=, <, <=, >, >=, LIKE, IN)")

    def parse_key(self) -> Key:
        tok = self.tok
        if tok.kind != "word" or tok.text.upper() in KEYWORDS:
            raise self.unexpected(KEY_EXPECTED)
        self.advance()
        return resolve_key(tok.text, tok.pos, self.param_paths)

    def parse_list(self, key: Key) -> tuple[Value, ...]:
        self.expect("(", "'(' after IN")
        values = [self.parse_value(key, "IN")]
        while self.tok.kind == ",":
            self.advance()
            values.append(self.parse_value(key, "IN"))
        self.expect(")", "',' or ')'")
        return tuple(values)

    def parse_value(self, key: Key, op: str) -> Value:
        tok = self.tok
        if tok.kind in ("number", "string"):
            value = tok.value
        elif self.at_word("TRUE", "FALSE", "NULL"):
            value = {"TRUE": True, "FALSE": False, "NULL": None}[tok.text.upper()]
        else:
            raise self.unexpected("a value (a number, a quoted string, true, false or null)")
        checked = check_value(key, op, value, tok.pos)
        self.advance()
        return checked


def resolve_key(name: str, pos: int, param_paths: Collection[str]) -> Key:
    """The :class:`Key` named ``name``, or a parse error with a did-you-mean."""
    lowered = name.lower()
    if lowered.startswith("params."):
        path = name[len("params.") :]
        if path in param_paths:
            return Key("param", path)
        close = difflib.get_close_matches(path, list(param_paths), n=1)
        hint = f"; did you mean params.{close[0]}?" if close else ""
        raise parse_error(f"unknown config path {path!r}{hint}", pos, "params.<config path>")
    if lowered.startswith("metrics."):
        metric = name[len("metrics.") :]
        if not metric:
            raise parse_error("empty metric name", pos, "metrics.<name>")
        return Key("metric", metric)
    if lowered in COLUMN_KEYS:
        return Key("column", lowered)
    names = [*COLUMN_KEYS, "params.", "metrics."]
    close = difflib.get_close_matches(lowered, names, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise parse_error(f"unknown key {name!r}{hint}", pos, KEY_EXPECTED)


def check_value(key: Key, op: str, value: Value, pos: int) -> Value:
    """Check ``value`` suits ``key`` and ``op``; ISO strings become datetimes for created_at."""
    if op in LIKE_OPS:
        return _check_pattern(key, value, pos)
    if (value is None or isinstance(value, bool)) and op not in ("=", "!=", "IN"):
        raise parse_error(f"{op} cannot compare with {_show(value)}", pos, "a number or string")
    if value is None:
        return value
    kind = "metric" if key.kind == "metric" else _column_type(key)
    if kind == "datetime":
        return _parse_datetime(value, pos)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "metric" and not number:
        raise parse_error("metrics are numbers", pos, "a number")
    if kind == "int" and not number:
        raise parse_error(f"{key.name} is a number", pos, "a number")
    if kind == "text" and not isinstance(value, str):
        raise parse_error(f"{key.name} is text", pos, "a quoted string")
    if kind == "bool" and not isinstance(value, bool):
        raise parse_error(f"{key.name} is true or false", pos, "true, false or null")
    return value


def _check_pattern(key: Key, value: Value, pos: int) -> str:
    """A LIKE pattern: a string, for a text key (a param, or a text column)."""
    text_key = key.kind != "metric" and _column_type(key) in (None, "text")
    if not isinstance(value, str) or not text_key:
        raise parse_error("LIKE needs a text key and a string pattern", pos, "a quoted pattern")
    if re.search(r"(?<!\\)(?:\\\\)*\\$", value):
        raise parse_error("a LIKE pattern cannot end with a lone backslash", pos, "a pattern")
    return value


def _column_type(key: Key) -> ColumnType | None:
    return COLUMN_KEYS[key.name][0] if key.kind == "column" else None


def _parse_datetime(value: Value, pos: int) -> dt.datetime:
    expected = "an ISO 8601 date or datetime string"
    if not isinstance(value, str):
        raise parse_error("created_at compares with a date", pos, expected)
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise parse_error(f"not a date: {value!r}", pos, expected) from None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def _show(value: Value) -> str:
    return "null" if value is None else str(value).lower()


def known_param_paths() -> frozenset[str]:
    """The ``params.`` paths: every leaf of the document schema (derived, never copied)."""
    return param_paths()


def parse(text: str, *, param_paths: Collection[str] | None = None) -> Node:
    """Parse a filter expression into its AST, or raise :class:`FilterParseError`."""
    parser = _Parser(text, known_param_paths() if param_paths is None else param_paths)
    if parser.tok.kind == "end":
        raise parser.unexpected("a filter expression")
    node = parser.parse_or()
    parser.finish("AND, OR or the end of the expression")
    return node


def parse_order_by(text: str, *, param_paths: Collection[str] | None = None) -> OrderBy:
    """Parse ``KEY [ASC|DESC]``, or raise :class:`FilterParseError`."""
    parser = _Parser(text, known_param_paths() if param_paths is None else param_paths)
    key = parser.parse_key()
    descending = False
    if parser.at_word("ASC", "DESC"):
        descending = parser.advance().text.upper() == "DESC"
    parser.finish("ASC, DESC or the end of order_by")
    return OrderBy(key, descending)
