"""Ingest a gateway webhook: verify, store in the inbox, apply once — before answering."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy.orm import Session

from reconciler.adapters import repository
from reconciler.adapters.gateways.base import (
    Headers,
    InvalidSignature,
    MalformedWebhook,
    WebhookEvent,
)
from reconciler.adapters.gateways.http import case_insensitive
from reconciler.adapters.models import DEFAULT_ACCOUNT
from reconciler.adapters.repository.changes import Stored
from reconciler.config import GATEWAYS
from reconciler.domain.ownership import hidden
from reconciler.domain.payment import Change, Entry, Reporting, Snapshot, apply
from reconciler.domain.status import Outcome, Source
from reconciler.services import changes, reliability
from reconciler.services.context import Context
from reconciler.services.errors import NotFound, SignatureRejected, WebhookUnreadable
from reconciler.services.reports import webhook_reporting

log = logging.getLogger(__name__)


class WebhookResult(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    ORPHAN = "orphan"
    IGNORED = "ignored"


@dataclass(frozen=True)
class Ingested:
    result: WebhookResult
    event_id: str
    payment_id: str | None = None
    outcome: str | None = None


def ingest_webhook(
    ctx: Context,
    gateway_name: str,
    headers: Headers,
    body: bytes,
    account: str = DEFAULT_ACCOUNT,
) -> Ingested:
    """Verify a delivery with one account's secrets, and store and apply it in one transaction.

    Raises SignatureRejected / WebhookUnreadable before anything is stored. A second
    delivery of the same gateway event id changes no payment; it is noted on the
    timeline as a duplicate. `headers` is a case-insensitive mapping (Flask's). An
    event applies only to the payments of the account whose path received it.
    """
    gateway = ctx.gateway_for(gateway_name, account) if gateway_name in GATEWAYS else None
    if gateway is None:
        if account != DEFAULT_ACCOUNT:
            raise NotFound(f"no {gateway_name} gateway account {account}")
        known = "is not configured" if gateway_name in GATEWAYS else "is unknown"
        raise NotFound(f"gateway {gateway_name!r} {known}")
    now = ctx.clock()
    try:
        event = gateway.parse_webhook(case_insensitive(headers), body, now)
    except InvalidSignature as exc:
        reliability.note_bad_signature(ctx, gateway_name, now, account)
        raise SignatureRejected(str(exc) or "signature verification failed") from None
    except MalformedWebhook as exc:
        raise WebhookUnreadable(str(exc) or "the webhook cannot be read") from None
    if not 0 < len(event.event_id) <= 200 or len(event.gateway_payment_id or "") > 200:
        raise WebhookUnreadable("event or payment id longer than 200 characters")
    ingest = _Ingest(gateway_name, event, body, now, ctx, account)
    if ctx.writer is not None:  # group commit: the answer waits for the commit holding it
        return ctx.writer.run(INGEST, ingest)
    with ctx.sessions.begin() as session:
        return ingest.store(session)


@dataclass(frozen=True)
class _Ingest:
    """One verified webhook to store and apply in the caller's transaction."""

    gateway: str
    event: WebhookEvent
    body: bytes
    now: datetime
    ctx: Context
    account: str = DEFAULT_ACCOUNT  # the gateway account whose path received it

    def store(self, session: Session) -> Ingested:
        gateway_name, event, body, now, ctx = (
            self.gateway,
            self.event,
            self.body,
            self.now,
            self.ctx,
        )
        policy = ctx.policy(gateway_name)
        payment = _locked_payment(session, gateway_name, event.gateway_payment_id, self.account)
        if payment is None and event.report is not None and event.gateway_payment_id:
            # Its registration may be committing right now: wait for it, then look again.
            repository.lock_gateway_payment(session, gateway_name, event.gateway_payment_id)
            payment = _locked_payment(session, gateway_name, event.gateway_payment_id, self.account)
        if payment is not None and event.report is not None and hidden(payment, event.report.owner):
            payment = None  # tagged for another merchant: nothing of it shows on this row
        change = None
        if payment is not None and event.report is not None:
            change = apply(payment, _reporting(event), policy, now, ctx.rand)
        # The raw body is stored first in the answer's order of things: a replay (by event
        # id or by body hash) inserts nothing, and then nothing is applied.
        entry_id = repository.insert_inbox(
            session,
            _inbox_row(gateway_name, event, body, now, payment, change)
            | {"gateway_account": self.account},
        )
        if entry_id is None:
            reliability.note_duplicate(ctx, gateway_name, event, now, self.account)
            if payment is not None:
                changes.append_entry(session, payment.id, _duplicate(payment, event, now))
            return Ingested(
                WebhookResult.DUPLICATE, event.event_id, payment.id if payment else None
            )
        if event.report is None:
            reliability.note_webhook(ctx, gateway_name, event, now, account=self.account)
            return Ingested(WebhookResult.IGNORED, event.event_id)
        if payment is None or change is None or change.decision is None:
            log.info(
                "webhook for a payment not registered yet",
                extra={"gateway": gateway_name, "gateway_payment_id": event.gateway_payment_id},
            )
            reliability.note_webhook(ctx, gateway_name, event, now, account=self.account)
            return Ingested(WebhookResult.ORPHAN, event.event_id)
        changes.store(session, [Stored(change)], notify=ctx.notify)
        reliability.note_webhook(ctx, gateway_name, event, now, payment, change, self.account)
        outcome = change.decision.outcome.value
        return Ingested(WebhookResult.APPLIED, event.event_id, payment.id, outcome)


class _Ingests:
    """Webhooks as a group-commit batch: each stored in turn, all in one transaction."""

    name = "webhooks"

    def write(self, session: Session, items: Sequence[_Ingest]) -> list[Ingested]:
        # In gateway payment order: batches that share payments lock them in one order.
        order = sorted(range(len(items)), key=lambda i: items[i].event.gateway_payment_id or "")
        stored = {index: items[index].store(session) for index in order}
        return [stored[index] for index in range(len(items))]


INGEST = _Ingests()


def _locked_payment(
    session: Session, gateway: str, gateway_payment_id: str | None, account: str
) -> Snapshot | None:
    if not gateway_payment_id:
        return None
    return repository.lock_snapshot_by_gateway_id(session, gateway, gateway_payment_id, account)


def _reporting(event: WebhookEvent) -> Reporting:
    assert event.report is not None
    return webhook_reporting(
        event.report, event_id=event.event_id, event_type=event.event_type, detail=event.detail
    )


def _duplicate(payment: Snapshot, event: WebhookEvent, now: datetime) -> Entry:
    return Entry(
        source=Source.WEBHOOK,
        outcome=Outcome.DUPLICATE,
        from_status=payment.status,
        to_status=payment.status,
        recorded_at=now,
        gateway_status=event.report.gateway_status if event.report else None,
        gateway_event_id=event.event_id,
        detail={"event_type": event.event_type},
    )


def _inbox_row(
    gateway: str,
    event: WebhookEvent,
    body: bytes,
    now: datetime,
    payment: Snapshot | None,
    change: Change | None,
) -> dict[str, object]:
    report = event.report
    applied = payment is not None and change is not None and change.decision is not None
    if report is None:
        outcome = "ignored"  # an event that says nothing about a status: done once stored
    elif applied and change is not None and change.decision is not None:
        outcome = change.decision.outcome.value
    else:
        outcome = "orphan"
    return {
        "gateway": gateway,
        "gateway_event_id": event.event_id,
        "event_type": event.event_type[:100],
        "gateway_payment_id": event.gateway_payment_id,
        "raw_body": body,
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "status": report.status.value if report else None,
        "gateway_status": report.gateway_status if report else None,
        "occurred_at": report.occurred_at if report else None,
        "detail": dict(event.detail) or None,
        "report_amount": report.amount if report else None,
        "report_currency": report.currency if report else None,
        "report_owner": report.owner if report else None,
        "received_at": now,
        "processed_at": None if outcome == "orphan" else now,
        "outcome": outcome,
        "payment_id": payment.id if applied and payment is not None else None,
    }
