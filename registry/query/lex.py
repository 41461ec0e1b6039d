"""The tokenizer of the filter language (:mod:`registry.query.parse`), and its error.

Pure: text in, a list of :class:`Token` out (ending with an ``end`` token), or
:class:`FilterParseError` with the 0-based character position and what was expected there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from registry.errors import FilterParseError


@dataclass(frozen=True)
class Token:
    """One token: kind ``word``, ``number``, ``string``, ``op``, ``(``, ``)``, ``,`` or ``end``."""

    kind: str
    text: str
    pos: int
    value: int | float | str | None = None


_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-/]*")
_OPS = ("<=", ">=", "!=", "<>", "=", "<", ">")


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens, ending with an ``end`` token."""
    for i, c in enumerate(text):
        # Neither database can store a NUL or a lone surrogate: refuse them here, not with a 500.
        if c == "\x00" or "\ud800" <= c <= "\udfff":
            raise parse_error(f"character {c!r} is not allowed", i, "printable text")
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "(),":
            tokens.append(Token(c, c, i))
            i += 1
        elif c in "'\"":
            value, end = _read_string(text, i)
            tokens.append(Token("string", text[i:end], i, value))
            i = end
        elif m := _NUMBER.match(text, i):
            literal = m.group()
            tokens.append(Token("number", literal, i, _number(literal)))
            i = m.end()
        elif m := _WORD.match(text, i):
            tokens.append(Token("word", m.group(), i))
            i = m.end()
        elif op := next((o for o in _OPS if text.startswith(o, i)), None):
            tokens.append(Token("op", "!=" if op == "<>" else op, i))
            i += len(op)
        else:
            raise parse_error(
                f"unexpected character {c!r}", i, "a key, value, operator or parenthesis"
            )
    tokens.append(Token("end", "", n))
    return tokens


def _number(literal: str) -> int | float:
    if any(ch in literal for ch in ".eE"):
        return float(literal)
    try:
        return int(literal)
    except ValueError:  # more digits than int() will parse: it is a huge number anyway
        return float(literal)


def _read_string(text: str, start: int) -> tuple[str, int]:
    """Read a quoted string: a backslash escapes any character; a doubled quote is itself."""
    quote, out, i = text[start], [], start + 1
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        elif c == quote and text.startswith(quote * 2, i):
            out.append(quote)
            i += 2
        elif c == quote:
            return "".join(out), i + 1
        else:
            out.append(c)
            i += 1
    raise parse_error("unterminated string", start, f"a closing {quote}")


def parse_error(message: str, position: int, expected: str) -> FilterParseError:
    """The error for ``message`` at ``position``, saying what was expected there."""
    return FilterParseError(
        f"{message} at position {position}: expected {expected}",
        position=position,
        expected=expected,
    )
