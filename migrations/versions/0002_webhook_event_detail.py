"""Keep what the adapter read from a webhook besides its status (e.g. a declined attempt).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 04:26:52
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column: adding it rewrites nothing, even on a large inbox.
    op.add_column("webhook_events", sa.Column("detail", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_events") as batch_op:
        batch_op.drop_column("detail")
