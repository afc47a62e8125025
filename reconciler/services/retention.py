"""Retention: the webhook inbox and settled notifications are kept only as long as an
operator chooses."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from reconciler.adapters import repository
from reconciler.services.context import Context
from reconciler.services.errors import ValidationFailed

# Gateways redeliver for days (Stripe for up to 3): the inbox is also the duplicate filter,
# so it must outlive every redelivery of an event.
MIN_RETENTION_DAYS = 7
BATCH = 5_000


def prune_inbox(ctx: Context, older_than_days: int) -> int:
    """Delete processed inbox entries received before the retention period; return how many.

    Orphans (events for payments not registered yet) are kept whatever their age, and the
    payments' timelines are never touched: they are the audit trail.
    """
    if older_than_days < MIN_RETENTION_DAYS:
        raise ValidationFailed(f"retention must be at least {MIN_RETENTION_DAYS} days")
    before = ctx.clock() - timedelta(days=older_than_days)
    deleted = 0
    while True:
        # Small transactions, so webhooks keep flowing while a large backlog is pruned.
        with ctx.sessions.begin() as session:
            count = repository.delete_processed_inbox(session, before=before, limit=BATCH)
        deleted += count
        if count < BATCH:
            return deleted


def prune_notifications(ctx: Context, older_than_days: int) -> tuple[int, int]:
    """Delete settled notifications created before the retention period; return how many
    deliveries and events went.

    A delivery is settled once `delivered` or `failed` (`recover` can still revive a
    failed one until it is pruned); an event goes when no delivery of it is left, so an
    event still owed to one endpoint stays with that delivery. Pending deliveries are
    never touched.
    """
    if older_than_days < MIN_RETENTION_DAYS:
        raise ValidationFailed(f"retention must be at least {MIN_RETENTION_DAYS} days")
    before = ctx.clock() - timedelta(days=older_than_days)
    deliveries = _in_batches(ctx, repository.delete_settled_deliveries, before)
    events = _in_batches(ctx, repository.delete_events_without_deliveries, before)
    return deliveries, events


def _in_batches(ctx: Context, delete: Callable[..., int], before: datetime) -> int:
    deleted = 0
    while True:
        with ctx.sessions.begin() as session:
            count = delete(session, before=before, limit=BATCH)
        deleted += count
        if count < BATCH:
            return deleted
