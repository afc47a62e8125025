"""Keep a merchant's previous API key hash and its expiry, for key rotation with a grace period.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable columns: adding them rewrites nothing.
    op.add_column("merchants", sa.Column("previous_key_hash", sa.String(64), nullable=True))
    op.add_column(
        "merchants", sa.Column("previous_key_expires_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index(
        "ix_merchants_previous_key_hash", "merchants", ["previous_key_hash"], unique=True
    )


def downgrade() -> None:
    op.drop_index("ix_merchants_previous_key_hash", table_name="merchants")
    with op.batch_alter_table("merchants") as batch_op:
        batch_op.drop_column("previous_key_expires_at")
        batch_op.drop_column("previous_key_hash")
