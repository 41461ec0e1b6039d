"""run queue: runs (leases, attempts, results) and workers

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import registry.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
UTC = registry.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("config_version_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("queue", sa.String(length=100), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("lease_expires_at", UTC, nullable=True),
        sa.Column("worker_id", sa.String(length=200), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("mlflow_run_id", sa.String(length=64), nullable=True),
        sa.Column("metrics", JSON, nullable=True),
        sa.Column("provenance", JSON, nullable=True),
        sa.Column("error", JSON, nullable=True),
        sa.Column("progress", JSON, nullable=True),
        sa.Column("reproduces", sa.Integer(), nullable=True),
        sa.Column("from_run", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("started_at", UTC, nullable=True),
        sa.Column("finished_at", UTC, nullable=True),
        sa.ForeignKeyConstraint(
            ["config_version_id"],
            ["config_versions.id"],
            name=op.f("fk_runs_config_version_id_config_versions"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(["from_run"], ["runs.id"], name=op.f("fk_runs_from_run_runs")),
        sa.ForeignKeyConstraint(
            ["reproduces"], ["runs.id"], name=op.f("fk_runs_reproduces_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index("ix_runs_config_version_id", "runs", ["config_version_id"])
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_index(
        "ix_runs_lease",
        "runs",
        ["lease_expires_at"],
        postgresql_where=sa.text("status = 'running'"),
        sqlite_where=sa.text("status = 'running'"),
    )
    op.create_index(
        "ix_runs_claimable",
        "runs",
        ["queue", sa.text("priority DESC"), "id"],
        postgresql_where=sa.text("status = 'queued'"),
        sqlite_where=sa.text("status = 'queued'"),
    )
    op.create_index(
        "ix_runs_claim_order",
        "runs",
        [sa.text("priority DESC"), "id"],
        postgresql_where=sa.text("status = 'queued'"),
        sqlite_where=sa.text("status = 'queued'"),
    )
    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=True),
        sa.Column("devices", JSON, nullable=True),
        sa.Column("queues", JSON, nullable=True),
        sa.Column("started_at", UTC, nullable=False),
        sa.Column("last_heartbeat_at", UTC, nullable=True),
        sa.Column("current_run_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["current_run_id"],
            ["runs.id"],
            name=op.f("fk_workers_current_run_id_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )


def downgrade() -> None:
    op.drop_table("workers")
    op.drop_index("ix_runs_claim_order", table_name="runs")
    op.drop_index("ix_runs_claimable", table_name="runs")
    op.drop_index("ix_runs_lease", table_name="runs")
    op.drop_index("ix_runs_status", table_name="runs")
    op.drop_index("ix_runs_config_version_id", table_name="runs")
    op.drop_table("runs")
