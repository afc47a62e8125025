"""The store-and-ack baseline: what a team would hand-write to receive webhooks.

Flask under the same waitress server, one route: verify the Standard Webhooks signature
(the simulator's scheme, the same secret), INSERT the raw body into one table (a
duplicate `webhook-id` is ignored), answer 200. Nothing is parsed or applied — that is
left to a worker later, as Convoy's ingest does. It uses the service's own engine
settings (`adapters/db.py`: on SQLite WAL, `synchronous=NORMAL`, queued writers), so
the difference from the service is the work done per webhook, not the database setup.

`waitress-serve --call bench.store_ack:create_app`, configured by the environment:
BENCH_STORE_ACK_DATABASE_URL and BENCH_STORE_ACK_SECRET.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from flask import Flask, request
from sqlalchemy import Column, DateTime, LargeBinary, MetaData, String, Table
from sqlalchemy.dialects import postgresql, sqlite
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from reconciler.adapters.db import make_engine

metadata = MetaData()
received = Table(
    "store_ack_webhooks",
    metadata,
    Column("webhook_id", String(200), primary_key=True),
    Column("body", LargeBinary, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)


def create_app() -> Flask:
    """Build the baseline app from the environment."""
    engine = make_engine(os.environ["BENCH_STORE_ACK_DATABASE_URL"])
    metadata.create_all(engine)
    verifier = Webhook(os.environ["BENCH_STORE_ACK_SECRET"])
    insert = (postgresql if engine.dialect.name == "postgresql" else sqlite).insert(received)
    statement = insert.on_conflict_do_nothing(index_elements=["webhook_id"])
    app = Flask("store_ack")

    @app.post("/webhooks/simulator")
    def receive() -> tuple[str, int]:
        body = request.get_data()
        try:
            verifier.verify(body, dict(request.headers), json_parse=False)
        except WebhookVerificationError:
            return "bad signature", 400
        with engine.begin() as conn:
            conn.execute(
                statement,
                {
                    "webhook_id": request.headers["webhook-id"],
                    "body": body,
                    "received_at": datetime.now(UTC),
                },
            )
        return "", 200

    return app
