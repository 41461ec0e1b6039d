"""Test databases: a migrated SQLite file or a throwaway PostgreSQL database."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, text

from registry.db import Base, make_engine
from registry.migrations import alembic_config

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get(
    "REGISTRY_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def migrate(url: str, revision: str = "head") -> None:
    """Build the schema the only way it is built: alembic upgrade."""
    command.upgrade(alembic_config(url), revision)


def postgres_available() -> str | None:
    """None when PostgreSQL answers, else the reason it does not."""
    try:
        engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any failure means "not reachable"
        return f"PostgreSQL at {PG_ADMIN_URL} is unreachable: {exc.__class__.__name__}: {exc}"


def require_postgres() -> None:
    """Skip (or, under CI, fail) when PostgreSQL is unreachable."""
    reason = postgres_available()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true needs PostgreSQL: {reason}", pytrace=False)
    pytest.skip(reason)


@contextmanager
def postgres_database() -> Iterator[str]:
    """Create an empty PostgreSQL database, yield its URL, drop it afterwards."""
    require_postgres()
    name = f"cr_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def database(kind: str, tmp: Path) -> Iterator[str]:
    """A fresh, un-migrated database URL of ``kind`` (``sqlite`` or ``postgres``)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / f'registry-{uuid.uuid4().hex[:8]}.db'}"
    else:
        with postgres_database() as url:
            yield url


def wipe(engine: Engine) -> None:
    """Delete every row (children first), keeping the schema."""
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


def migrated_engine(url: str) -> Engine:
    """Migrate ``url`` to head and return an engine on it."""
    migrate(url)
    return make_engine(url)
