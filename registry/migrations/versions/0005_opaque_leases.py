"""opaque leases stored hashed; 64-bit run seeds

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # sha256 of the claim's lease: the secret itself is only ever in the worker's hands.
    op.add_column("runs", sa.Column("lease_hash", sa.String(length=64), nullable=True))
    # The document allows seeds up to 2**32 - 1; PostgreSQL's 32-bit INTEGER refused half of
    # them. SQLite's INTEGER already holds 64 bits: no table rebuild there (it would have to
    # drop a table other tables reference).
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column(
            "runs", "seed", existing_type=sa.Integer(), type_=sa.BigInteger(), nullable=False
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column(
            "runs", "seed", existing_type=sa.BigInteger(), type_=sa.Integer(), nullable=False
        )
    # SQLite 3.35+ drops a column in place; a batch rebuild would drop a referenced table.
    op.drop_column("runs", "lease_hash")
