"""ORM tables only. The schema itself is made by the Alembic migrations."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from registry.db import Base, JSONType, UTCDateTime, utcnow

IntPK = Annotated[int, mapped_column(Integer, primary_key=True, autoincrement=True)]
Created = Annotated[dt.datetime, mapped_column(UTCDateTime(), default=utcnow, nullable=False)]
Timestamp = Annotated[dt.datetime | None, mapped_column(UTCDateTime(), nullable=True)]
Name = Annotated[str, mapped_column(String(200), nullable=False)]
Json = Annotated[dict[str, Any] | None, mapped_column(JSONType, nullable=True)]

ROLES = ("admin", "submitter", "viewer", "worker")
RUN_KINDS = ("train", "evaluate")
#: A run is active while queued or running; finished once it reaches any other status.
ACTIVE_STATUSES = ("queued", "running")
FINISHED_STATUSES = ("succeeded", "failed", "cancelled")
RUN_STATUSES = (*ACTIVE_STATUSES, *FINISHED_STATUSES)


class Config(Base):
    """A named line of config versions."""

    __tablename__ = "configs"

    id: Mapped[IntPK]
    name: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[Created]

    versions: Mapped[list[ConfigVersion]] = relationship(
        back_populates="config", order_by="ConfigVersion.version"
    )


class ConfigVersion(Base):
    """One immutable, normalised config document, identified by its hash."""

    __tablename__ = "config_versions"
    __table_args__ = (UniqueConstraint("config_id", "version"),)

    id: Mapped[IntPK]
    config_id: Mapped[int] = mapped_column(
        ForeignKey("configs.id", ondelete="CASCADE"), nullable=False
    )
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    warnings: Mapped[list[dict[str, str]] | None] = mapped_column(JSONType, nullable=True)
    parent_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[Created]

    config: Mapped[Config] = relationship(back_populates="versions")


class Token(Base):
    """An API token; only the sha256 of the secret is stored."""

    __tablename__ = "tokens"

    id: Mapped[IntPK]
    name: Mapped[Name]
    role: Mapped[str] = mapped_column(String(20), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    created_at: Mapped[Created]
    last_used_at: Mapped[Timestamp]
    revoked_at: Mapped[Timestamp]


class Run(Base):
    """A queued, running or finished training or evaluation of one config version."""

    __tablename__ = "runs"
    __table_args__ = (
        # The claim query's index: only queued rows, best priority then oldest.
        Index(
            "ix_runs_claimable",
            "queue",
            text("priority DESC"),
            "id",
            postgresql_where=text("status = 'queued'"),
            sqlite_where=text("status = 'queued'"),
            info={"expression_index": True},
        ),
        # A claim from several queues cannot read the index above in order (it would sort
        # every queued row); it walks this one in claim order and filters on the queue.
        Index(
            "ix_runs_claim_order",
            text("priority DESC"),
            "id",
            postgresql_where=text("status = 'queued'"),
            sqlite_where=text("status = 'queued'"),
            info={"expression_index": True},
        ),
        Index(
            "ix_runs_lease",
            "lease_expires_at",
            postgresql_where=text("status = 'running'"),
            sqlite_where=text("status = 'running'"),
        ),
        Index("ix_runs_status", "status"),
        Index("ix_runs_config_version_id", "config_version_id"),
    )

    id: Mapped[IntPK]
    config_version_id: Mapped[int] = mapped_column(
        ForeignKey("config_versions.id", ondelete="RESTRICT"), nullable=False
    )
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="queued")
    queue: Mapped[str] = mapped_column(String(100), nullable=False, default="default")
    priority: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    # 64 bits (migration 0005); SQLite's INTEGER is 64-bit already.
    seed: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), nullable=False)
    lease_expires_at: Mapped[Timestamp]
    #: sha256 of the current claim's opaque lease (migration 0005); None when not running.
    lease_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    worker_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    metrics: Mapped[Json]
    provenance: Mapped[Json]
    error: Mapped[Json]
    progress: Mapped[Json]
    reproduces: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), nullable=True)
    from_run: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[Created]
    started_at: Mapped[Timestamp]
    finished_at: Mapped[Timestamp]
    # Reproducibility (migration 0003), set by registry.indexing.index_finished_run.
    provenance_complete: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
    reproduction: Mapped[Json]
    identical: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    reproduced: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
    # Out-of-memory remedies (migration 0007, registry.services.remedies): ``fail`` or
    # ``remedy``; the run queued with the next remedy when this one ran out of memory.
    on_oom: Mapped[str] = mapped_column(String(10), nullable=False, server_default="fail")
    remedied_by: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), nullable=True)

    version: Mapped[ConfigVersion] = relationship()


class Worker(Base):
    """A worker daemon as it last announced itself."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str | None] = mapped_column(String(200), nullable=True)
    devices: Mapped[Json]
    queues: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    started_at: Mapped[Created]
    last_heartbeat_at: Mapped[Timestamp]
    current_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), nullable=True
    )


# --- the query index (migration 0003), kept by registry.indexing -----------------------------

Index("ix_runs_reproduces", Run.reproduces)
Index("ix_runs_created_at", Run.created_at)


class VersionParam(Base):
    """One leaf of a config version's document, as a number and/or text, for the filter index."""

    __tablename__ = "version_params"
    __table_args__ = (
        Index("ix_version_params_key_num", "key", "num", "version_id"),
        Index("ix_version_params_key_text", "key", "text", "version_id"),
    )

    version_id: Mapped[int] = mapped_column(
        ForeignKey("config_versions.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    num: Mapped[float | None] = mapped_column(Float, nullable=True)
    text: Mapped[str | None] = mapped_column(String(), nullable=True)


class RunMetric(Base):
    """One final metric of a run, for the filter index."""

    __tablename__ = "run_metrics"
    __table_args__ = (Index("ix_run_metrics_key_value", "key", "value", "run_id"),)

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[float] = mapped_column(Float, nullable=False)


# --- web users (migration 0004), kept by registry.users ----------------------------------------


class User(Base):
    """A person who signs in to the web UI with a name and password (only a hash is stored)."""

    __tablename__ = "users"

    id: Mapped[IntPK]
    name: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    role: Mapped[str] = mapped_column(String(20), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(512), nullable=False)
    created_at: Mapped[Created]
    last_login_at: Mapped[Timestamp]
    disabled_at: Mapped[Timestamp]


# --- sign-in throttling and web sessions (migration 0006), kept by registry.services ---------


class AuthFailure(Base):
    """Failed authentications of one key (``scope:value``) in the current fixed window."""

    __tablename__ = "auth_failures"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    window_start: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False, index=True)
    count: Mapped[int] = mapped_column(Integer, nullable=False)


class WebSession(Base):
    """A signed-in browser: the cookie holds a random secret, this row only its sha256."""

    __tablename__ = "web_sessions"
    __table_args__ = (CheckConstraint("(token_id IS NULL) <> (user_id IS NULL)", name="one_owner"),)

    id: Mapped[IntPK]
    secret_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    token_id: Mapped[int | None] = mapped_column(
        ForeignKey("tokens.id", ondelete="CASCADE"), nullable=True, index=True
    )
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True
    )
    created_at: Mapped[Created]
    last_seen_at: Mapped[Timestamp]
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False, index=True)
    ended_at: Mapped[Timestamp]
