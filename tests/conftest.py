"""Layered fixtures: settings -> migrated engine -> session -> app -> client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from registry.db import make_session_factory
from registry.http.app import create_app
from registry.services.auth import create_token
from registry.settings import Settings
from tests.support.dbs import database, migrated_engine, wipe


@pytest.fixture(autouse=True)
def _stop_processes_left_running() -> Iterator[None]:
    """A test that failed midway must not leave its server or worker processes behind."""
    yield
    from tests.support.procs import stop_started

    stop_started()


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session", params=BACKENDS)
def db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database of each backend, migrated once per test session."""
    with database(request.param, tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture(scope="session")
def _engine(db_url: str) -> Iterator[Engine]:
    engine = migrated_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(_engine: Engine) -> Iterator[Engine]:
    """The migrated engine, emptied after each test."""
    yield _engine
    wipe(_engine)


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session on the migrated database; the test commits or not as it likes."""
    factory = make_session_factory(engine)
    with factory() as s:
        yield s
        s.rollback()


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    """Settings for one test: its database, MLflow under tmp_path, a short lease."""
    return Settings(
        database_url=db_url,
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        mlflow_artifact_root=str(tmp_path / "mlartifacts"),
        secret_key="test-only-session-key-never-used-outside-tests",
        lease_seconds=60,
    )


@pytest.fixture
def app(settings: Settings, engine: Engine) -> Flask:
    """The Flask app on the test database."""
    app = create_app(settings, engine=engine)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client (no token)."""
    return app.test_client()


def _token(engine: Engine, role: str) -> str:
    factory = make_session_factory(engine)
    with factory() as s:
        secret = create_token(s, f"test-{role}", role)
        s.commit()
    return secret


@pytest.fixture
def tokens(engine: Engine) -> dict[str, str]:
    """One token per role."""
    return {role: _token(engine, role) for role in ("admin", "submitter", "viewer", "worker")}


@pytest.fixture
def auth(tokens: dict[str, str]):
    """``auth(role)`` -> the headers for a request made with that role's token."""
    return lambda role="admin": {"Authorization": f"Bearer {tokens[role]}"}
