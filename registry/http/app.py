"""create_app(settings): one session per request, the blueprints, one error handler."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, g, jsonify, render_template, request
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from registry.db import make_engine, make_session_factory
from registry.errors import DatabaseUnavailable, RegistryError, TooManyRequests
from registry.http import context
from registry.http.api import bp as api_bp
from registry.http.limits import BodyLimit, refuse_oversized
from registry.http.params import IdConverter, VersionRefConverter
from registry.http.web import bp as web_bp
from registry.settings import Settings, checked_secret_key

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> Flask:
    """Build the Flask app for ``settings`` (read from the environment when omitted).

    WeakSecretKey when ``settings.secret_key`` is unset, short or a shipped default: the app
    never signs sessions with a key an outsider could know.
    """
    settings = settings or Settings.from_env()
    secret_key = checked_secret_key(settings.secret_key)
    app = Flask(__name__, template_folder="web/templates", static_folder="web/static")
    app.config.update(
        SECRET_KEY=secret_key,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        JSON_SORT_KEYS=False,
    )
    engine = engine or make_engine(settings.database_url)
    sessions, readers = make_session_factory(engine), make_session_factory(engine, reads=True)
    context.install(app, context.Services(settings, engine, sessions, readers))

    _install_input_limits(app)
    _install_session_per_request(app)
    _install_error_handlers(app)

    app.register_blueprint(api_bp)
    app.register_blueprint(web_bp)
    # Bearer tokens, not cookies: the JSON API has no ambient authority for CSRF to forge.
    app.extensions["csrf"].exempt(api_bp)
    return app


def _install_input_limits(app: Flask) -> None:
    """Route integers within the id columns' range (else 404) and the body limit counted in
    bytes however the body arrives (else 413); before any route is added or any view runs."""
    app.url_map.converters["int"] = IdConverter
    app.url_map.converters["id"] = IdConverter
    app.url_map.converters["version"] = VersionRefConverter
    limited = BodyLimit(app.wsgi_app, app.config["MAX_CONTENT_LENGTH"])
    app.wsgi_app = limited  # type: ignore[method-assign]
    app.before_request(refuse_oversized)


#: Methods whose handlers write nothing: their session only reads (registry.db.read_only).
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _install_session_per_request(app: Flask) -> None:
    """Each request gets one session (a reading one for GET, HEAD and OPTIONS, which write
    nothing, so they never take SQLite's write lock); it commits only on a success."""

    @app.before_request
    def _open_session() -> None:
        services = context.of(app)
        g.db = (services.readers if request.method in READ_METHODS else services.sessions)()

    @app.after_request
    def _commit(response: Response) -> Response:
        db: Session | None = g.pop("db", None)
        if db is None:
            return response
        try:
            if response.status_code < 400:
                db.commit()
            else:
                db.rollback()
        except Exception as exc:
            db.rollback()
            log.exception("commit failed")
            response = _json_error(_as_registry_error(exc))
        finally:
            db.close()
        return response

    @app.teardown_request
    def _close(_exc: BaseException | None) -> None:
        db: Session | None = g.pop("db", None)
        if db is not None:
            db.rollback()
            db.close()


def _as_registry_error(exc: Exception) -> RegistryError:
    from sqlalchemy.exc import IntegrityError

    from registry.errors import Conflict

    if isinstance(exc, IntegrityError):
        return Conflict("the change conflicts with stored data; retry")
    if database_unavailable(exc):
        return DatabaseUnavailable()
    return RegistryError("internal error")


def database_unavailable(exc: BaseException) -> bool:
    """True for an error that means the database is down, restarting, cut off or too busy to
    answer now (worth a retry), not a fault of the request or of the code."""
    if isinstance(exc, OperationalError | PoolTimeout):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _json_error(err: RegistryError) -> Response:
    response = jsonify(err.to_dict())
    response.status_code = err.status
    if isinstance(err, TooManyRequests | DatabaseUnavailable):
        response.headers["Retry-After"] = str(err.retry_after)
    return response


def _database_unavailable_answer(err: SQLAlchemyError) -> Any:
    """503 with Retry-After: JSON for the API, the error page for a browser."""
    log.warning("database unavailable on %s %s: %s", request.method, request.path, err)
    db: Session | None = g.pop("db", None)  # its connection is gone; the page reads nothing
    if db is not None:
        try:
            db.close()
        except SQLAlchemyError:
            log.debug("closing a session whose database went away", exc_info=True)
    unavailable = DatabaseUnavailable()
    if _wants_json():
        return _json_error(unavailable)
    page = render_template("error.html", code=unavailable.status, message=unavailable.message)
    return page, unavailable.status, {"Retry-After": str(unavailable.retry_after)}


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def _install_error_handlers(app: Flask) -> None:
    @app.errorhandler(RegistryError)
    def _registry_error(err: RegistryError) -> Any:
        return _json_error(err)

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> Any:
        if not _wants_json():
            return err
        code = (err.name or "error").lower().replace(" ", "_")
        body = {"error": err.description or err.name, "code": code}
        response = jsonify(body)
        response.status_code = err.code or 500
        # The exception's own headers, such as a 405's Allow (RFC 9110 requires it).
        for name, value in err.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(SQLAlchemyError)
    def _database_error(err: SQLAlchemyError) -> Any:
        if database_unavailable(err):
            return _database_unavailable_answer(err)
        return _unexpected(err)

    @app.errorhandler(Exception)
    def _unexpected(err: Exception) -> Any:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _json_error(RegistryError("internal error; see the server log"))
