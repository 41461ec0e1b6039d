"""gunicorn's threaded worker, answering the requests it refuses itself in the API's JSON shape.

gunicorn parses the request line and headers before the app sees them, and refuses one that is
too long with a hand-written HTML page. A client of a JSON API (a script, a fuzzer reading the
OpenAPI document) should get the same ``{"error", "code"}`` as from every other refusal, and a
status that says what happened: 414 for a request line over the limit, 431 for headers.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from gunicorn.http.errors import LimitRequestHeaders, LimitRequestLine
from gunicorn.util import write_nonblock
from gunicorn.workers.gthread import ThreadWorker

#: What gunicorn itself refuses, as (status, reason, code, message).
_REFUSALS: dict[type[Exception], tuple[int, str, str, str]] = {
    LimitRequestLine: (
        414,
        "URI Too Long",
        "uri_too_long",
        "the request line (URL with its query string) is too long; send a shorter filter",
    ),
    LimitRequestHeaders: (
        431,
        "Request Header Fields Too Large",
        "headers_too_large",
        "the request headers are too many or too large",
    ),
}


class JsonErrorThreadWorker(ThreadWorker):  # type: ignore[misc]
    """``gthread`` with JSON answers for the request lines and headers gunicorn refuses."""

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        refusal = next((r for t, r in _REFUSALS.items() if isinstance(exc, t)), None)
        if refusal is None:
            super().handle_error(req, client, addr, exc)
            return
        status, reason, code, message = refusal
        self.log.warning("refused a request from %s: %s", (addr or ("",))[0], exc)
        body = json.dumps({"error": message, "code": code}).encode()
        head = (
            f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        with contextlib.suppress(OSError):  # the client is gone; nothing to tell it
            write_nonblock(client, head.encode("latin-1") + body)
