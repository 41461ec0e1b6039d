"""The JSON API under /api/v1: parse -> service -> serialise; no SQL, no commit.

Importing this package imports every route module, so ``bp`` carries all the routes.
"""

from __future__ import annotations

from registry.http.api import configs, meta, runs
from registry.http.api.blueprint import bp

__all__ = ["bp", "configs", "meta", "runs"]
