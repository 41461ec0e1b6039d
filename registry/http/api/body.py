"""Reading request bodies: JSON or YAML, size-limited, errors with line and column."""

from __future__ import annotations

from typing import Any

from flask import g, request

from registry.document.parse import check_text, parse_document, parse_json
from registry.errors import BadRequest, DocumentParseError, PayloadTooLarge


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
    obj = parse_document(text, "yaml") if "yaml" in ctype else parse_json(text)
    if not isinstance(obj, dict):
        raise BadRequest("the request body must be a JSON object")
    check_text(obj)
    return obj


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
