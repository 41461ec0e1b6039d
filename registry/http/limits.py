"""The request body limit, counted in bytes however the body arrives.

With a ``Content-Length`` Werkzeug refuses an oversized body before reading it. A chunked body
(``Transfer-Encoding: chunked``) has no length up front, and Werkzeug then reads at most
``MAX_CONTENT_LENGTH`` bytes and stops *silently*: a 2 MiB YAML body became its first MiB and
was stored with the fields after the cut missing. :class:`BodyLimit` reads such a body itself,
up to one byte past the limit, so that it is either whole (and given a ``Content-Length``) or
marked too large; :func:`refuse_oversized` then answers 413 before any view, form parser or
CSRF check reads it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

from flask import request

from registry.errors import PayloadTooLarge

__all__ = ["TOO_LARGE", "BodyLimit", "refuse_oversized"]

#: The environ key that marks a streamed body as over the limit.
TOO_LARGE = "registry.body_too_large"
_CHUNK = 64 * 1024
#: How much more of a refused body is read and dropped, so that the client, still sending,
#: reads the 413 instead of a reset connection; past this the connection is simply closed.
DRAIN_BYTES = 8 * 1024 * 1024

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class BodyLimit:
    """WSGI middleware: a body without a Content-Length is read here, at most ``limit + 1``
    bytes; a whole one is handed on with its length, a longer one is marked :data:`TOO_LARGE`
    (and not read further)."""

    def __init__(self, app: WsgiApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if _streamed(environ):
            data = _read_at_most(environ["wsgi.input"], self.limit + 1)
            if len(data) > self.limit:
                environ[TOO_LARGE] = True
                _drain(environ["wsgi.input"], DRAIN_BYTES)
                data = b""
            # Now an ordinary sized body, read as one (Werkzeug takes any chunked header to
            # mean "no length", so that goes).
            environ["wsgi.input"] = io.BytesIO(data)
            environ["CONTENT_LENGTH"] = str(len(data))
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            environ.pop("wsgi.input_terminated", None)
        return self.app(environ, start_response)


def _streamed(environ: dict[str, Any]) -> bool:
    """A body without a length (none given, or chunked, which overrides one) whose end the
    server finds: it decodes the chunks and says so with ``wsgi.input_terminated`` (gunicorn
    always, Werkzeug's server for chunked bodies). Without that flag the raw stream may never
    end, and Werkzeug reads no body at all."""
    if "wsgi.input_terminated" not in environ:
        return False
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    return chunked or not (environ.get("CONTENT_LENGTH") or "").strip()


def _read_at_most(stream: Any, most: int) -> bytes:
    out = bytearray()
    while len(out) < most:
        block = stream.read(min(_CHUNK, most - len(out)))
        if not block:
            break
        out += block
    return bytes(out)


def _drain(stream: Any, most: int) -> None:
    read = 0
    while read < most:
        block = stream.read(min(_CHUNK, most - read))
        if not block:
            return
        read += len(block)


def refuse_oversized() -> None:
    """(before_request) 413 for a body over the limit, whether or not the view would read it."""
    limit = request.max_content_length
    if request.environ.get(TOO_LARGE) or (
        limit is not None and (request.content_length or 0) > limit
    ):
        if not request.environ.get(TOO_LARGE):
            # A sized body still on the wire: drop (a bounded amount of) it before answering.
            _drain(request.environ["wsgi.input"], min(request.content_length or 0, DRAIN_BYTES))
        raise PayloadTooLarge(f"the request body is larger than {_size(limit)}; send less")


def _size(limit: int | None) -> str:
    if limit is None:
        return "the limit"
    if limit % (1024 * 1024) == 0:
        return f"{limit // (1024 * 1024)} MiB"
    return f"{limit} bytes"
