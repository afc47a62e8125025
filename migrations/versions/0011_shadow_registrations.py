"""A gateway payment id unique per account and merchant; one row tracks it, others shadow.

On the shared `default` account two merchants may name the same gateway payment: the
first registration tracks it, a later one by another merchant is a shadow that shows
what an unknown id shows (answering 409 told the second merchant that it exists).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 19:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A constant default: neither PostgreSQL 11+ nor SQLite rewrites the table for it.
    with op.batch_alter_table("payments") as batch:
        batch.add_column(
            sa.Column("shadow", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.drop_constraint(
            "uq_payments_gateway_gateway_account_gateway_payment_id", type_="unique"
        )
        batch.create_unique_constraint(
            "uq_payments_gateway_payment_per_merchant",
            ["gateway", "gateway_account", "gateway_payment_id", "merchant_id"],
        )
    op.create_index(
        "uq_payments_tracked_gateway_payment",
        "payments",
        ["gateway", "gateway_account", "gateway_payment_id"],
        unique=True,
        postgresql_where=sa.text("NOT shadow"),
        sqlite_where=sa.text("NOT shadow"),
    )


def downgrade() -> None:
    # Shadows cannot live under the old constraint, and dropping payments is a person's call.
    shadows = op.get_bind().scalar(sa.text("SELECT count(*) FROM payments WHERE shadow"))
    if shadows:
        raise RuntimeError(
            f"{shadows} shadow registrations exist; delete them before downgrading below 0011"
        )
    op.drop_index("uq_payments_tracked_gateway_payment", table_name="payments")
    with op.batch_alter_table("payments") as batch:
        batch.drop_constraint("uq_payments_gateway_payment_per_merchant", type_="unique")
        batch.create_unique_constraint(
            "uq_payments_gateway_gateway_account_gateway_payment_id",
            ["gateway", "gateway_account", "gateway_payment_id"],
        )
        batch.drop_column("shadow")
