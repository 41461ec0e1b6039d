"""Reading request bodies: JSON or YAML, size-limited, errors with line and column."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from flask import g, request

from registry.errors import BadRequest, DocumentParseError, PayloadTooLarge
from registry.spec import parse_document


def _raw_body() -> bytes:
    limit = request.max_content_length
    if limit is not None and (request.content_length or 0) > limit:
        raise PayloadTooLarge()
    data = request.get_data(cache=True)
    if limit is not None and len(data) > limit:
        raise PayloadTooLarge()
    return data


def json_body() -> dict[str, Any]:
    """The request body as a JSON (or YAML, by content type) object."""
    data = _raw_body()
    if not data.strip():
        raise BadRequest("the request body is empty; send a JSON object")
    ctype = (request.mimetype or "").lower()
    text = _decode(data)
    if "yaml" in ctype:
        obj = parse_document(text, "yaml")
    else:
        obj = parse_json(text)
    if not isinstance(obj, dict):
        raise BadRequest("the request body must be a JSON object")
    check_text(obj)
    return obj


#: NUL and lone surrogates: valid in JSON escapes, refused by PostgreSQL and UTF-8.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def check_text(obj: Any) -> None:
    """BadRequest if any key or string in ``obj`` holds a character no database can store."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and _UNSTORABLE.search(item):
            raise BadRequest("strings may not contain NUL (\\u0000) or lone surrogates")


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; PostgreSQL's JSONB would refuse them later anyway.
    raise ValueError(f"{name} is not allowed in JSON")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise ValueError(f"the number {literal[:40]} is too large")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} appears twice")
        out[key] = value
    return out


def parse_json(text: str) -> Any:
    """Parse JSON text; any failure is a DocumentParseError with line and column when known."""
    try:
        return json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            object_pairs_hook=_unique_keys,
        )
    except json.JSONDecodeError as exc:
        raise DocumentParseError(
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            line=exc.lineno,
            column=exc.colno,
        ) from None
    except RecursionError:
        raise DocumentParseError("malformed JSON: nested too deeply") from None
    except ValueError as exc:  # NaN/Infinity, huge integers, duplicate keys
        raise DocumentParseError(f"malformed JSON: {exc}") from None


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentParseError(f"the body is not UTF-8 (byte {exc.start})") from None


def document_of(value: Any) -> Any:
    """A ``config`` field as a document: strings are parsed as YAML or JSON text."""
    if isinstance(value, str):
        value = parse_document(value)
        check_text(value)
    return value


def current_user() -> str | None:
    """The name of the token that made this request, if any."""
    token = getattr(g, "token", None)
    return token.name if token is not None else None
