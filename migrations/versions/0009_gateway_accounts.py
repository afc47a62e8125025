"""Gateway accounts; payments and webhooks per account; secrets sealed; amounts; cancel reason.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 16:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gateway_accounts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("gateway", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("credentials", sa.Text(), nullable=False),
        sa.Column("webhook_secret", sa.Text(), nullable=False),
        sa.Column("previous_webhook_secret", sa.Text(), nullable=True),
        sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name="fk_gateway_accounts_merchant_id_merchants",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_gateway_accounts"),
    )
    op.create_index(
        "ix_gateway_accounts_merchant_id", "gateway_accounts", ["merchant_id", "gateway"]
    )
    # Constant defaults: existing rows belong to the environment's `default` account, and
    # neither PostgreSQL 11+ nor SQLite rewrites the table to add them.
    with op.batch_alter_table("payments") as batch:
        batch.add_column(
            sa.Column(
                "gateway_account",
                sa.String(length=32),
                nullable=False,
                server_default="default",
            )
        )
        batch.add_column(sa.Column("cancel_reason", sa.String(length=32), nullable=True))
        batch.drop_constraint("uq_payments_gateway_gateway_payment_id", type_="unique")
        batch.create_unique_constraint(
            "uq_payments_gateway_gateway_account_gateway_payment_id",
            ["gateway", "gateway_account", "gateway_payment_id"],
        )
    op.drop_index("ix_webhook_events_orphans", table_name="webhook_events")
    with op.batch_alter_table("webhook_events") as batch:
        batch.add_column(
            sa.Column(
                "gateway_account",
                sa.String(length=32),
                nullable=False,
                server_default="default",
            )
        )
        batch.add_column(sa.Column("report_amount", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("report_currency", sa.String(length=3), nullable=True))
        batch.add_column(sa.Column("report_owner", sa.String(length=64), nullable=True))
        batch.drop_constraint("uq_webhook_events_gateway_gateway_event_id", type_="unique")
        batch.drop_constraint("uq_webhook_events_gateway_body_sha256", type_="unique")
        batch.create_unique_constraint(
            "uq_webhook_events_gateway_gateway_account_gateway_event_id",
            ["gateway", "gateway_account", "gateway_event_id"],
        )
        batch.create_unique_constraint(
            "uq_webhook_events_gateway_gateway_account_body_sha256",
            ["gateway", "gateway_account", "body_sha256"],
        )
    op.create_index(
        "ix_webhook_events_orphans",
        "webhook_events",
        ["gateway", "gateway_account", "gateway_payment_id"],
        postgresql_where=sa.text("payment_id IS NULL"),
        sqlite_where=sa.text("payment_id IS NULL"),
    )
    # A sealed secret (`fernet:` and a Fernet token) is longer than a clear `whsec_…`.
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.alter_column("secret", type_=sa.Text(), existing_nullable=False)
        batch.alter_column("previous_secret", type_=sa.Text(), existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.alter_column("secret", type_=sa.String(length=100), existing_nullable=False)
        batch.alter_column("previous_secret", type_=sa.String(length=100), existing_nullable=True)
    op.drop_index("ix_webhook_events_orphans", table_name="webhook_events")
    with op.batch_alter_table("webhook_events") as batch:
        batch.drop_constraint(
            "uq_webhook_events_gateway_gateway_account_body_sha256", type_="unique"
        )
        batch.drop_constraint(
            "uq_webhook_events_gateway_gateway_account_gateway_event_id", type_="unique"
        )
        batch.create_unique_constraint(
            "uq_webhook_events_gateway_body_sha256", ["gateway", "body_sha256"]
        )
        batch.create_unique_constraint(
            "uq_webhook_events_gateway_gateway_event_id", ["gateway", "gateway_event_id"]
        )
        batch.drop_column("report_owner")
        batch.drop_column("report_currency")
        batch.drop_column("report_amount")
        batch.drop_column("gateway_account")
    op.create_index(
        "ix_webhook_events_orphans",
        "webhook_events",
        ["gateway", "gateway_payment_id"],
        postgresql_where=sa.text("payment_id IS NULL"),
        sqlite_where=sa.text("payment_id IS NULL"),
    )
    with op.batch_alter_table("payments") as batch:
        batch.drop_constraint(
            "uq_payments_gateway_gateway_account_gateway_payment_id", type_="unique"
        )
        batch.create_unique_constraint(
            "uq_payments_gateway_gateway_payment_id", ["gateway", "gateway_payment_id"]
        )
        batch.drop_column("cancel_reason")
        batch.drop_column("gateway_account")
    op.drop_index("ix_gateway_accounts_merchant_id", table_name="gateway_accounts")
    op.drop_table("gateway_accounts")
