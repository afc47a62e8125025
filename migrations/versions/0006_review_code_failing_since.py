"""Review reason as a code; failures in a row; since when an endpoint fails; events by time.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNKNOWN = "the gateway does not know this payment"


def upgrade() -> None:
    # A nullable column: adding it rewrites nothing, even on a large table.
    op.add_column("payments", sa.Column("review_code", sa.String(length=32), nullable=True))
    # A constant default: PostgreSQL 11+ and SQLite add it without rewriting the table.
    op.add_column(
        "payments",
        sa.Column("poll_failures", sa.Integer(), nullable=False, server_default=sa.text("0")),
    )
    op.add_column("webhook_endpoints", sa.Column("failing_since", sa.DateTime(timezone=True)))
    # The operator's page counts timeline rows per minute over the last hour.
    op.create_index("ix_payment_events_recorded_at", "payment_events", ["recorded_at"])
    payments = sa.table(
        "payments",
        sa.column("review_code", sa.String),
        sa.column("review_reason", sa.Text),
        sa.column("sync_state", sa.String),
    )
    op.execute(
        payments.update()
        .where(payments.c.sync_state == "needs_review", payments.c.review_reason == UNKNOWN)
        .values(review_code="unknown_to_gateway")
    )
    op.execute(
        payments.update()
        .where(payments.c.sync_state == "needs_review", payments.c.review_code.is_(None))
        .values(review_code="conflicting_reports")
    )


def downgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("poll_failures")
    op.drop_index("ix_payment_events_recorded_at", table_name="payment_events")
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.drop_column("failing_since")
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("review_code")
