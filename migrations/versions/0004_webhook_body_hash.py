"""A replayed webhook body is a duplicate whatever event id comes with it: hash the body.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 08:50:00
"""

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1000


def upgrade() -> None:
    op.add_column("webhook_events", sa.Column("body_sha256", sa.String(64), nullable=True))
    # Bodies already kept are hashed too, so a replay of one of them is caught after upgrade.
    # Two copies of one body under different event ids (replays let in before this
    # revision) keep the hash on the first only: NULLs do not collide in a unique index.
    conn = op.get_bind()
    events = sa.table(
        "webhook_events",
        sa.column("id", sa.Integer),
        sa.column("gateway", sa.String),
        sa.column("raw_body", sa.LargeBinary),
        sa.column("body_sha256", sa.String),
    )
    seen: set[tuple[str, str]] = set()
    last_id = 0
    while True:
        rows = conn.execute(
            sa.select(events.c.id, events.c.gateway, events.c.raw_body)
            .where(events.c.id > last_id)
            .order_by(events.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        for row_id, gateway, raw_body in rows:
            digest = hashlib.sha256(bytes(raw_body)).hexdigest()
            if (gateway, digest) not in seen:
                seen.add((gateway, digest))
                conn.execute(
                    events.update().where(events.c.id == row_id).values(body_sha256=digest)
                )
        last_id = rows[-1][0]
    with op.batch_alter_table("webhook_events") as batch_op:
        batch_op.create_unique_constraint(
            "uq_webhook_events_gateway_body_sha256", ["gateway", "body_sha256"]
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_events") as batch_op:
        batch_op.drop_constraint("uq_webhook_events_gateway_body_sha256", type_="unique")
        batch_op.drop_column("body_sha256")
