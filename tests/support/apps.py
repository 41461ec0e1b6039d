"""More app instances on the test database (each with its own engine: another process's view)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask

from registry.http import context
from registry.http.app import create_app
from registry.http.clock import set_clock
from registry.settings import Settings
from tests.support.clock import Clock


@contextmanager
def app_instance(settings: Settings, clock: Clock | None = None) -> Iterator[Flask]:
    """``create_app(settings)`` with an engine of its own, disposed afterwards."""
    app = create_app(settings)
    app.config["TESTING"] = True
    if clock is not None:
        set_clock(app, clock)
    try:
        yield app
    finally:
        context.of(app).engine.dispose()
