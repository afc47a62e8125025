"""An endpoint's last error; a delivery's manual request; an index of the leased ones.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 16:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable columns: adding them rewrites nothing, even on a large table.
    op.add_column("webhook_endpoints", sa.Column("last_error", sa.Text()))
    op.add_column("webhook_endpoints", sa.Column("last_error_at", sa.DateTime(timezone=True)))
    op.add_column("notification_deliveries", sa.Column("requested_at", sa.DateTime(timezone=True)))
    # The delivery claim counts each merchant's leased deliveries; few rows are leased.
    op.create_index(
        "ix_notification_deliveries_leased",
        "notification_deliveries",
        ["endpoint_id"],
        postgresql_where=sa.text("lease_owner IS NOT NULL"),
        sqlite_where=sa.text("lease_owner IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_notification_deliveries_leased", table_name="notification_deliveries")
    op.drop_column("notification_deliveries", "requested_at")
    op.drop_column("webhook_endpoints", "last_error_at")
    op.drop_column("webhook_endpoints", "last_error")
