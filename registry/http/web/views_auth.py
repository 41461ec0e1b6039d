"""Sign in (a token, or a name and password), sign out, and the web error pages."""

from __future__ import annotations

from typing import Any

from flask import g, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from registry.errors import RegistryError, Unauthorized
from registry.http import throttling
from registry.http.web.blueprint import bp
from registry.http.web.signin import WEB_ROLES, current_viewer, safe_next, sign_in, sign_out
from registry.services import throttle
from registry.services.auth import authenticate
from registry.services.throttle import Throttled
from registry.services.users import authenticate_user


@bp.app_context_processor
def _viewer() -> dict[str, Any]:
    return {"viewer": current_viewer() if "db" in g else None}


@bp.get("/")
def home() -> Any:
    """The config list is the front page."""
    return redirect(url_for("web.configs"))


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """Sign in with an API token or a name and password (throttled after repeated failures)."""
    target = safe_next(request.values.get("next")) or url_for("web.configs")
    if request.method == "GET":
        return render_template("login.html", next=target, error=None, method="token")
    method = request.form.get("method", "token")
    try:
        if method == "password":
            _sign_in_with_password(request.form.get("name", ""), request.form.get("password", ""))
        else:
            _sign_in_with_token(request.form.get("token", "").strip() or None)
    except Throttled as err:
        message = f"Too many failed sign-ins; try again in {_wait(err.retry_after)}."
        page = render_template("login.html", next=target, error=message, method=method)
        return page, 429, throttling.retry_after(err)
    except Unauthorized as err:
        page = render_template("login.html", next=target, error=err.message, method=method)
        return page, 401
    # A 303 so the browser does not re-post the credentials on reload.
    return redirect(target, code=303)


def _sign_in_with_password(name: str, password: str) -> None:
    """Check the throttle before scrypt runs, count a failure, forget the account's on success."""
    rules = throttling.rules()
    account = [(rules.signin_account, name)]
    counters = [*account, (rules.signin_address, throttling.client_address())]
    throttling.check(counters)
    try:
        user = authenticate_user(g.db, name, password)
    except Unauthorized:
        throttling.record_failure(counters)
        raise
    throttle.clear(g.db, account)
    sign_in("user", user.id)


def _sign_in_with_token(secret: str | None) -> None:
    """A web-role token signs in unless this address has failed too often."""
    counters = [(throttling.rules().signin_address, throttling.client_address())]
    throttling.check(counters)
    try:
        token = authenticate(g.db, secret)
        if token.role not in WEB_ROLES:
            raise Unauthorized(f"a {token.role} token cannot sign in to the web UI")
    except Unauthorized:
        throttling.record_failure(counters)
        raise
    sign_in("token", token.id)


def _wait(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} seconds"
    return f"{-(-seconds // 60)} minutes"


@bp.post("/logout")
def logout() -> Any:
    """Sign out."""
    sign_out()
    return redirect(url_for("web.login"), code=303)


@bp.errorhandler(RegistryError)
def _registry_error(err: RegistryError) -> Any:
    return render_template("error.html", code=err.status, message=err.message), err.status


@bp.errorhandler(HTTPException)
def _http_error(err: HTTPException) -> Any:
    code = err.code or 500
    return render_template("error.html", code=code, message=err.description), code
