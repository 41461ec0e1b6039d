"""Declarative base with a naming convention, engine and session factories, UTC time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, Engine, MetaData, TypeDecorator, create_engine, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: JSON that is JSONB on PostgreSQL.
JSONType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use registry.db.utcnow()")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    """Base of every ORM table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the one writer; the busy timeout rides out short locks.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


#: The execution option that marks a connection's transactions as reads (see ``read_only``).
READ_ONLY = "registry_read_only"


def _sqlite_begin(conn: Any) -> None:
    # A writer's BEGIN IMMEDIATE takes the write lock up front, so read-then-write never
    # deadlocks; a reader's plain (deferred) BEGIN takes none: under WAL it reads a snapshot
    # beside the one writer, so page views never queue heartbeats and claims behind them.
    read = conn.get_execution_options().get(READ_ONLY, False)
    conn.exec_driver_sql("BEGIN" if read else "BEGIN IMMEDIATE")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; for SQLite, create the file's folder and set WAL and foreign keys."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, **kwargs)
        # Take over transaction control from pysqlite so BEGIN IMMEDIATE is used.
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(
            engine, "connect", lambda c, r: setattr(c, "isolation_level", None), insert=True
        )
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # A pooled connection that the server dropped (a restart, a failover) is replaced at
    # checkout instead of failing the request; a server that does not answer fails a new
    # connection after 10 s (the app answers 503 then) instead of the OS's minutes.
    kwargs.setdefault("pool_pre_ping", True)
    if parsed.get_backend_name() == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": 10, **kwargs.get("connect_args", {})}
    return create_engine(url, **kwargs)


def read_only(engine: Engine) -> Engine:
    """``engine`` (same pool) for transactions that only read: a deferred ``BEGIN`` on SQLite
    (no write lock), ``BEGIN READ ONLY`` on PostgreSQL (a write in it is an error)."""
    return engine.execution_options(**{READ_ONLY: True, "postgresql_readonly": True})


def is_reading(session: Session) -> bool:
    """Whether ``session`` is bound to a ``read_only`` engine."""
    return bool(session.get_bind().get_execution_options().get(READ_ONLY, False))


def make_session_factory(engine: Engine, *, reads: bool = False) -> sessionmaker[Session]:
    """A session factory bound to ``engine`` (``reads``: to ``read_only(engine)``); objects
    stay readable after commit."""
    return sessionmaker(bind=read_only(engine) if reads else engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work that may write (on SQLite ``BEGIN IMMEDIATE`` unless ``factory`` is a
    reading one): commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def reading(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work that only reads (see ``read_only``), whatever ``factory`` is bound to;
    rolled back at the end."""
    bind = factory.kw["bind"]
    session = factory(bind=bind if bind.get_execution_options().get(READ_ONLY) else read_only(bind))
    try:
        yield session
    finally:
        session.rollback()
        session.close()


def end_transaction(session: Session) -> None:
    """Commit ``session`` and release its connection now, before slow work outside the database
    (an MLflow read, a network call). Its objects stay readable, detached: a lazy load after
    this raises instead of opening a transaction again."""
    session.commit()
    session.close()


@contextmanager
def transaction_at(url: str) -> Iterator[Session]:
    """One unit of work on database ``url`` with an engine of its own (a command's whole use)."""
    engine = make_engine(url)
    try:
        with transaction(make_session_factory(engine)) as session:
            yield session
    finally:
        engine.dispose()


def is_postgres(session_or_engine: Session | Engine) -> bool:
    """True when the bound database is PostgreSQL."""
    if isinstance(session_or_engine, Session):
        return session_or_engine.get_bind().dialect.name == "postgresql"
    return session_or_engine.dialect.name == "postgresql"
