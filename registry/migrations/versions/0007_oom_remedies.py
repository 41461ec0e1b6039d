"""out-of-memory remedies: runs.on_oom and runs.remedied_by

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Every run queued before this revision fails on out of memory, as it always did.
    op.add_column(
        "runs",
        sa.Column("on_oom", sa.String(length=10), server_default="fail", nullable=False),
    )
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a column with its reference in place; a batch rebuild of runs would drop
        # a table other tables reference. SQLite names no constraint.
        op.execute("ALTER TABLE runs ADD COLUMN remedied_by INTEGER REFERENCES runs (id)")
        return
    op.add_column("runs", sa.Column("remedied_by", sa.Integer(), nullable=True))
    op.create_foreign_key(op.f("fk_runs_remedied_by_runs"), "runs", "runs", ["remedied_by"], ["id"])


def downgrade() -> None:
    op.drop_column("runs", "remedied_by")
    op.drop_column("runs", "on_oom")
