"""What the web blueprint installs on the app: cookies, CSRF, headers, template helpers."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from flask import Flask, Response, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect

from registry.http import context
from registry.settings import HSTS

#: Only our own scripts and styles; no inline code, no framing, no plugins.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def install(app: Flask) -> None:
    """Install the web layer's app-wide parts once."""
    if "registry.http.web" in app.extensions:
        return
    app.extensions["registry.http.web"] = True
    settings = context.of(app).settings
    app.config.update(
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="registry_session",
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=12),
        # The token lives as long as the signed-in session; a form left open an hour still works.
        WTF_CSRF_TIME_LIMIT=None,
    )
    CSRFProtect(app)  # create_app exempts the bearer-token API (no cookies, nothing to forge)
    app.after_request(_security_headers)
    if settings.tls:  # served over HTTPS (REGISTRY_TLS=1): browsers must never fall back to HTTP
        app.after_request(_strict_transport_security)
    app.register_error_handler(CSRFError, _csrf_refused)
    _template_helpers(app)


def _security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "public, max-age=3600")
    else:
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _strict_transport_security(response: Response) -> Response:
    response.headers["Strict-Transport-Security"] = HSTS
    return response


def _csrf_refused(err: CSRFError) -> Any:
    if request.accept_mimetypes.best == "application/json":
        return {"error": err.description, "code": "csrf"}, 400
    return render_template("error.html", code=400, message=err.description), 400


def _template_helpers(app: Flask) -> None:
    from registry.http.web import formatting

    app.jinja_env.filters.update(
        when=formatting.when,
        ago=formatting.ago,
        num=formatting.num,
        short_hash=formatting.short_hash,
        value=formatting.value,
        tojson_pretty=lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=str),
    )
    app.jinja_env.globals.update(status_class=formatting.status_class)
