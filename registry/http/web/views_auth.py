"""Sign in (a token, or a name and password), sign out, and the web error pages."""

from __future__ import annotations

from typing import Any

from flask import g, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from registry.errors import RegistryError, Unauthorized
from registry.http.web.blueprint import bp
from registry.http.web.signin import WEB_ROLES, current_viewer, safe_next, sign_in, sign_out
from registry.services.auth import authenticate
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
    """Sign in with an API token or a name and password."""
    target = safe_next(request.values.get("next")) or url_for("web.configs")
    if request.method == "GET":
        return render_template("login.html", next=target, error=None, method="token")
    method = request.form.get("method", "token")
    try:
        if method == "password":
            user = authenticate_user(
                g.db, request.form.get("name", ""), request.form.get("password", "")
            )
            sign_in("user", user.id)
        else:
            token = authenticate(g.db, request.form.get("token", "").strip() or None)
            if token.role not in WEB_ROLES:
                raise Unauthorized(f"a {token.role} token cannot sign in to the web UI")
            sign_in("token", token.id)
    except Unauthorized as err:
        page = render_template("login.html", next=target, error=err.message, method=method)
        return page, 401
    # A 303 so the browser does not re-post the credentials on reload.
    return redirect(target, code=303)


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
