"""What a request reaches the app's parts through: settings, the engine, the session factories.

Views and route modules import this module, never the app: ``create_app`` puts one
``Services`` on the app, and ``current()`` finds it on the app of the current request.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from registry.settings import Settings

KEY = "registry"


@dataclass
class Services:
    """What a request needs from the app: settings and the database."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    #: Sessions for requests that only read (``registry.db.read_only``: no SQLite write lock).
    readers: sessionmaker[Session]


def install(app: Flask, services: Services) -> None:
    """Attach ``services`` to ``app``."""
    app.extensions[KEY] = services


def of(app: Flask) -> Services:
    """The Services attached to ``app``."""
    return app.extensions[KEY]  # type: ignore[no-any-return]


def current() -> Services:
    """The Services of the app handling the current request."""
    return of(current_app)  # type: ignore[arg-type]


def settings() -> Settings:
    """The settings of the app handling the current request."""
    return current().settings
