"""The JSON API's blueprint under /api/v1; each route module adds its views to it."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")
