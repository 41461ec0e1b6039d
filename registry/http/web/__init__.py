"""The HTML blueprint: server-rendered pages over the services, CSRF on every form.

Registering ``bp`` on an app (create_app does) also installs, once per app: the session cookie
policy, Flask-WTF's CSRFProtect (with the bearer-token JSON API exempt), the security headers
on every response, and the template helpers. ``init_app(app)`` does the same explicitly.
"""

from __future__ import annotations

from flask import Blueprint, Flask
from flask.blueprints import BlueprintSetupState

bp = Blueprint("web", __name__)


def init_app(app: Flask) -> None:
    """Cookie policy, CSRF, security headers and template helpers for ``app`` (idempotent)."""
    from registry.http.web.setup import install

    install(app)


@bp.record_once
def _on_register(state: BlueprintSetupState) -> None:
    init_app(state.app)  # type: ignore[arg-type]  # always a Flask app here


# Page modules register their views on ``bp`` when imported.
from registry.http.web import (  # noqa: E402,F401
    views_auth,
    views_configs,
    views_detail,
    views_runs,
    views_workers,
)
