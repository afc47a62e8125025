"""SQLAlchemy tables: merchants, payments, the timeline, the webhook inbox, notifications,
and the webhook reliability counts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from reconciler.domain.ownership import DEFAULT_ACCOUNT

__all__ = ["DEFAULT_ACCOUNT"]  # the rest are the models, imported by name

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Store aware UTC datetimes; read them back aware (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        # SQLite compares timestamps as text: store one fixed naive-UTC format.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(none_as_null=True)}


class Merchant(Base):
    __tablename__ = "merchants"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    api_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    # The key replaced by the last rotation, accepted until `previous_key_expires_at`.
    previous_key_hash: Mapped[str | None] = mapped_column(String(64), unique=True, index=True)
    previous_key_expires_at: Mapped[datetime | None]


class GatewayAccount(Base):
    """One merchant's credentials and webhook secrets at one gateway (all sealed)."""

    __tablename__ = "gateway_accounts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    gateway: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # active / disabled
    credentials: Mapped[str] = mapped_column(Text)  # sealed JSON
    webhook_secret: Mapped[str] = mapped_column(Text)  # sealed
    # The secret replaced by the last rotation, still verifying until it expires.
    previous_webhook_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (Index("ix_gateway_accounts_merchant_id", "merchant_id", "gateway"),)


class Payment(Base):
    __tablename__ = "payments"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    merchant_reference: Mapped[str] = mapped_column(String(200))
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    gateway: Mapped[str] = mapped_column(String(32))
    gateway_payment_id: Mapped[str | None] = mapped_column(String(200))
    idempotency_key: Mapped[str] = mapped_column(String(64))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    gateway_status: Mapped[str | None] = mapped_column(String(64))
    status_source: Mapped[str | None] = mapped_column(String(16))
    review_code: Mapped[str | None] = mapped_column(String(32))  # domain.sync.ReviewReason
    review_reason: Mapped[str | None] = mapped_column(Text)  # the detail, in words
    cancel_reason: Mapped[str | None] = mapped_column(String(32))  # "abandoned", or None
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    settled_at: Mapped[datetime | None]
    last_event_at: Mapped[datetime | None]  # the gateway's time of the last applied report
    # Sync: the per-row polling schedule and the sweep's lease.
    sync_state: Mapped[str] = mapped_column(String(24))
    poll_attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Transient call failures in a row: they retry on their own short backoff.
    poll_failures: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    next_poll_at: Mapped[datetime | None]
    last_polled_at: Mapped[datetime | None]
    last_delay_s: Mapped[float | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    give_up_at: Mapped[datetime]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(Integer, default=1)
    # The sequence of the payment's last merchant notification (0: none yet).
    notification_sequence: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The gateway account it lives in: a `gwa_…` id, or `default` (the environment's).
    gateway_account: Mapped[str] = mapped_column(
        String(32), default=DEFAULT_ACCOUNT, server_default=DEFAULT_ACCOUNT
    )
    # Registered on the shared `default` account while another merchant already tracks
    # that gateway payment: polled like any row, it shows what an unknown id shows.
    shadow: Mapped[bool] = mapped_column(default=False, server_default=false())

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        UniqueConstraint("merchant_id", "merchant_reference"),
        # A gateway payment id is unique per account (two accounts are two namespaces)
        # and merchant; one row per account tracks it, the others are shadows.
        UniqueConstraint(
            "gateway",
            "gateway_account",
            "gateway_payment_id",
            "merchant_id",
            name="uq_payments_gateway_payment_per_merchant",
        ),
        Index(
            "uq_payments_tracked_gateway_payment",
            "gateway",
            "gateway_account",
            "gateway_payment_id",
            unique=True,
            postgresql_where=text("NOT shadow"),
            sqlite_where=text("NOT shadow"),
        ),
        Index("ix_payments_merchant_id_created_at", "merchant_id", "created_at", "id"),
        # The sweep's claim reads only rows with a next poll time: keep that index small.
        Index(
            "ix_payments_due",
            "next_poll_at",
            postgresql_where=text("next_poll_at IS NOT NULL"),
            sqlite_where=text("next_poll_at IS NOT NULL"),
        ),
    )


class PaymentEvent(Base):
    __tablename__ = "payment_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    recorded_at: Mapped[datetime] = mapped_column(index=True)  # operators' per-minute chart
    source: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16))
    from_status: Mapped[str] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    gateway_status: Mapped[str | None] = mapped_column(String(64))
    gateway_event_id: Mapped[str | None] = mapped_column(String(200))
    occurred_at: Mapped[datetime | None]
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class WebhookInbox(Base):
    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    gateway: Mapped[str] = mapped_column(String(32))
    # The account whose webhook path received it: events of two accounts never mix.
    gateway_account: Mapped[str] = mapped_column(
        String(32), default=DEFAULT_ACCOUNT, server_default=DEFAULT_ACCOUNT
    )
    gateway_event_id: Mapped[str] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(100))
    gateway_payment_id: Mapped[str | None] = mapped_column(String(200))
    raw_body: Mapped[bytes] = mapped_column(LargeBinary)
    # SHA-256 of the raw body: the same signed body is one event, whatever id comes with it.
    body_sha256: Mapped[str | None] = mapped_column(String(64))
    # The verified, parsed report, kept so an orphan can be applied at registration.
    status: Mapped[str | None] = mapped_column(String(16))
    gateway_status: Mapped[str | None] = mapped_column(String(64))
    occurred_at: Mapped[datetime | None]
    detail: Mapped[dict[str, Any] | None]  # what the adapter read besides the status
    # The report's amount, currency and owner tag: an orphan is checked like a live event.
    report_amount: Mapped[int | None] = mapped_column(BigInteger)
    report_currency: Mapped[str | None] = mapped_column(String(3))
    report_owner: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]
    outcome: Mapped[str] = mapped_column(String(16))
    payment_id: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (
        UniqueConstraint("gateway", "gateway_account", "gateway_event_id"),
        UniqueConstraint("gateway", "gateway_account", "body_sha256"),
        # Orphans (events for payments not registered yet) are looked up at registration.
        Index(
            "ix_webhook_events_orphans",
            "gateway",
            "gateway_account",
            "gateway_payment_id",
            postgresql_where=text("payment_id IS NULL"),
            sqlite_where=text("payment_id IS NULL"),
        ),
    )


class SweepHeartbeat(Base):
    """When each sweeper last finished a sweep (for /readyz and operators)."""

    __tablename__ = "sweep_heartbeats"

    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    finished_at: Mapped[datetime]
    claimed: Mapped[int] = mapped_column(Integer, default=0)


class AdminSession(Base):
    """A signed-in session of the operator's page; signing out revokes it here."""

    __tablename__ = "admin_sessions"

    # SHA-256 of the session's secret id: the cookie carries the id, the table only its hash.
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_admin_sessions_expires_at", "expires_at"),)


# --- Outbound notifications (merchant webhooks) ------------------------------------------


class WebhookEndpoint(Base):
    """A merchant's URL that receives notifications; its secret is kept usable to sign."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16))
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    # Sealed (`adapters.secrets`): every delivery is signed with it (HMAC), so it cannot be
    # stored hashed, and a copy of the database must not be enough to forge deliveries.
    secret: Mapped[str] = mapped_column(Text)
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]  # soft delete: its deliveries stay listable
    failing_since: Mapped[datetime | None]  # first failed attempt since the last success
    last_error: Mapped[str | None] = mapped_column(Text)  # of the last attempt; None: it worked
    last_error_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_webhook_endpoints_merchant_id", "merchant_id", "created_at"),)


class NotificationEvent(Base):
    """One notification about a payment, written in the transaction that changed it."""

    __tablename__ = "notification_events"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"))
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    type: Mapped[str] = mapped_column(String(40))
    sequence: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    payload: Mapped[dict[str, Any]]  # the whole body sent: {id, type, created_at, sequence, data}

    __table_args__ = (UniqueConstraint("payment_id", "sequence"),)


class NotificationDelivery(Base):
    """One event to one endpoint: a row with its own retry schedule and lease."""

    __tablename__ = "notification_deliveries"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("notification_events.id"), index=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    last_response_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    last_delay_s: Mapped[float | None]
    give_up_at: Mapped[datetime]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]
    # A merchant asked for this attempt (retry, recover): it goes out past an open breaker.
    requested_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_notification_deliveries_endpoint", "endpoint_id", "created_at", "id"),
        # The engine's claim reads only rows with a next attempt: keep that index small.
        Index(
            "ix_notification_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("next_attempt_at IS NOT NULL"),
            sqlite_where=text("next_attempt_at IS NOT NULL"),
        ),
        # The claim counts each merchant's deliveries in flight (leased): a small index.
        Index(
            "ix_notification_deliveries_leased",
            "endpoint_id",
            postgresql_where=text("lease_owner IS NOT NULL"),
            sqlite_where=text("lease_owner IS NOT NULL"),
        ),
    )


# --- Gateway webhook reliability -----------------------------------------------------------


class WebhookTally(Base):
    """Webhook counts of one gateway account and event type in one minute (upserted)."""

    __tablename__ = "webhook_tallies"

    account_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(100), primary_key=True)
    minute: Mapped[datetime] = mapped_column(primary_key=True, index=True)
    received: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    out_of_order: Mapped[int] = mapped_column(Integer, default=0)
    bad_signatures: Mapped[int] = mapped_column(Integer, default=0)
    by_webhook: Mapped[int] = mapped_column(Integer, default=0)  # terminal status first told
    polled_first: Mapped[int] = mapped_column(Integer, default=0)  # terminal status first polled
    late: Mapped[int] = mapped_column(Integer, default=0)  # its webhook came after all


class WebhookDelay(Base):
    """A delay histogram bucket of one account and event type in one 5-minute slot."""

    __tablename__ = "webhook_delays"

    account_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(100), primary_key=True)
    slot: Mapped[datetime] = mapped_column(primary_key=True, index=True)
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True)  # domain.reliability
    count: Mapped[int] = mapped_column(Integer, default=0)
    terminal: Mapped[int] = mapped_column(Integer, default=0)  # of which reported a terminal status
    late: Mapped[int] = mapped_column(Integer, default=0)  # of which came after a poll's find
