"""sign-in throttling counters and server-side web sessions

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import registry.db

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "auth_failures",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("window_start", registry.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_auth_failures")),
    )
    op.create_index(
        op.f("ix_auth_failures_window_start"), "auth_failures", ["window_start"], unique=False
    )
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("created_at", registry.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", registry.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("expires_at", registry.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", registry.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(token_id IS NULL) <> (user_id IS NULL)", name=op.f("ck_web_sessions_one_owner")
        ),
        sa.ForeignKeyConstraint(
            ["token_id"],
            ["tokens.id"],
            name=op.f("fk_web_sessions_token_id_tokens"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_web_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_web_sessions_secret_hash")),
    )
    for column in ("token_id", "user_id", "expires_at"):
        op.create_index(op.f(f"ix_web_sessions_{column}"), "web_sessions", [column], unique=False)


def downgrade() -> None:
    for column in ("expires_at", "user_id", "token_id"):
        op.drop_index(op.f(f"ix_web_sessions_{column}"), table_name="web_sessions")
    op.drop_table("web_sessions")
    op.drop_index(op.f("ix_auth_failures_window_start"), table_name="auth_failures")
    op.drop_table("auth_failures")
