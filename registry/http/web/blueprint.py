"""The HTML pages' blueprint; each views module adds its pages to it.

Registering ``bp`` on an app (create_app does) also installs, once per app: the session cookie
policy, Flask-WTF's CSRFProtect, the security headers on every response and the template
helpers (:func:`registry.http.web.setup.install`).
"""

from __future__ import annotations

from flask import Blueprint
from flask.blueprints import BlueprintSetupState

from registry.http.web import setup

bp = Blueprint("web", __name__)


@bp.record_once
def _on_register(state: BlueprintSetupState) -> None:
    setup.install(state.app)  # type: ignore[arg-type]  # always a Flask app here
