"""The JSON API blueprint under /api/v1: parse -> service -> serialise; no SQL, no commit."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

# Route modules register their views on ``bp`` when imported.
from registry.http.api import configs as _configs  # noqa: E402,F401
from registry.http.api import meta as _meta  # noqa: E402,F401

try:  # the runs routes arrive with the queue
    from registry.http.api import runs as _runs  # noqa: E402,F401
except ImportError:  # pragma: no cover - only while the queue is being built
    pass
