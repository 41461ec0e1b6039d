"""query index: version_params, run_metrics, reproducibility columns on runs; backfilled

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "version_params",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("num", sa.Float(), nullable=True),
        sa.Column("text", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["config_versions.id"],
            name=op.f("fk_version_params_version_id_config_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("version_id", "key", name=op.f("pk_version_params")),
    )
    op.create_index("ix_version_params_key_num", "version_params", ["key", "num", "version_id"])
    op.create_index("ix_version_params_key_text", "version_params", ["key", "text", "version_id"])
    op.create_table(
        "run_metrics",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_run_metrics_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "key", name=op.f("pk_run_metrics")),
    )
    op.create_index("ix_run_metrics_key_value", "run_metrics", ["key", "value", "run_id"])
    # recreate="never": plain ALTER TABLE ADD/DROP COLUMN (SQLite >= 3.35). Recreating runs
    # would DROP it, which with foreign keys on fails on (or cascades into) rows pointing at it.
    with op.batch_alter_table("runs", recreate="never") as batch:
        batch.add_column(
            sa.Column("provenance_complete", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("reproduction", JSON, nullable=True))
        batch.add_column(sa.Column("identical", sa.Boolean(), nullable=True))
        batch.add_column(
            sa.Column("reproduced", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_index("ix_runs_reproduces", "runs", ["reproduces"])
    op.create_index("ix_runs_created_at", "runs", ["created_at"])

    from registry.services.indexing import backfill

    backfill(op.get_bind())


def downgrade() -> None:
    op.drop_index("ix_runs_created_at", table_name="runs")
    op.drop_index("ix_runs_reproduces", table_name="runs")
    with op.batch_alter_table("runs", recreate="never") as batch:
        batch.drop_column("reproduced")
        batch.drop_column("identical")
        batch.drop_column("reproduction")
        batch.drop_column("provenance_complete")
    op.drop_index("ix_run_metrics_key_value", table_name="run_metrics")
    op.drop_table("run_metrics")
    op.drop_index("ix_version_params_key_text", table_name="version_params")
    op.drop_index("ix_version_params_key_num", table_name="version_params")
    op.drop_table("version_params")
