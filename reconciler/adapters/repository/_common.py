"""What every query module shares: the tables as Core objects and the dialect test."""

from __future__ import annotations

from typing import cast

from sqlalchemy import (
    Table,
)
from sqlalchemy.orm import Session

from reconciler.adapters.models import (
    NotificationDelivery,
    NotificationEvent,
    Payment,
    PaymentEvent,
    WebhookEndpoint,
    WebhookInbox,
)

payments_table = cast(Table, Payment.__table__)
inbox_table = cast(Table, WebhookInbox.__table__)
deliveries_table = cast(Table, NotificationDelivery.__table__)
events_table = cast(Table, NotificationEvent.__table__)
endpoints_table = cast(Table, WebhookEndpoint.__table__)
timeline_table = cast(Table, PaymentEvent.__table__)


def dialect(session: Session) -> str:
    return session.get_bind().dialect.name
