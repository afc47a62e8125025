"""Webhook reliability: per-minute counts and a 5-minute delay histogram per account.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TALLIES = ("received", "duplicates", "out_of_order", "bad_signatures", "by_webhook", "polled_first")


def upgrade() -> None:
    op.create_table(
        "webhook_tallies",
        sa.Column("account_key", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in (*TALLIES, "late")),
        sa.PrimaryKeyConstraint(
            "account_key", "event_type", "minute", name=op.f("pk_webhook_tallies")
        ),
    )
    op.create_index(op.f("ix_webhook_tallies_minute"), "webhook_tallies", ["minute"])
    op.create_table(
        "webhook_delays",
        sa.Column("account_key", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("slot", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("terminal", sa.Integer(), nullable=False),
        sa.Column("late", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "account_key", "event_type", "slot", "bucket", name=op.f("pk_webhook_delays")
        ),
    )
    op.create_index(op.f("ix_webhook_delays_slot"), "webhook_delays", ["slot"])


def downgrade() -> None:
    op.drop_index(op.f("ix_webhook_delays_slot"), table_name="webhook_delays")
    op.drop_table("webhook_delays")
    op.drop_index(op.f("ix_webhook_tallies_minute"), table_name="webhook_tallies")
    op.drop_table("webhook_tallies")
