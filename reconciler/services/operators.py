"""Read-only questions an operator asks: the backlog, the breakers, what needs a human."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from reconciler.adapters import repository
from reconciler.adapters.models import Payment, PaymentEvent
from reconciler.domain.breaker import BreakerState, CircuitBreaker
from reconciler.domain.status import Source, Status, SyncState
from reconciler.services.context import Context
from reconciler.services.engine import CIRCUIT_OPEN
from reconciler.services.errors import NotFound, ValidationFailed
from reconciler.services.health import WAITING
from reconciler.services.notify_stats import NotifyStats, notify_stats
from reconciler.services.payments import page_start
from reconciler.services.polling import GATEWAY_NOT_CONFIGURED, breaker_key

HUMAN_STATES = (SyncState.NEEDS_REVIEW, SyncState.GAVE_UP)
CHART_MINUTES = 60
MAX_MATCHES = 20
# What a payment held back by an open breaker (never called) shows as its last error.
HELD_ERRORS = (CIRCUIT_OPEN, GATEWAY_NOT_CONFIGURED)  # a hold, not a call's answer


@dataclass(frozen=True)
class Minute:
    """Polls and webhooks recorded on the timeline during one UTC minute."""

    start: datetime
    polls: int
    webhooks: int


@dataclass(frozen=True)
class BreakerView:
    """One gateway's breaker as this process sees it, with the last failure on record."""

    gateway: str
    state: str  # a BreakerState value, or "unknown" when this process runs no sweep
    failures: int
    opened_at: datetime | None
    open_until: datetime | None
    last_failure_at: datetime | None
    last_failure: str | None


@dataclass(frozen=True)
class AccountView:
    """A merchant's own gateway account, with its breaker in this process."""

    id: str
    merchant_id: str
    gateway: str
    status: str
    webhook_path: str
    breaker: str  # a BreakerState value; "unknown" when no poll has used it here yet


@dataclass(frozen=True)
class Overview:
    """The numbers on the overview page, all read at `now`."""

    now: datetime
    by_status: dict[str, int]
    by_sync_state: dict[str, int]
    due_now: int
    oldest_pending_age_s: float | None
    minutes: list[Minute]
    breakers: list[BreakerView]
    notifications: NotifyStats  # merchant deliveries: backlog, oldest undelivered, endpoints
    accounts: list[AccountView]  # merchants' own gateway accounts (`default` is the breakers')

    @property
    def total(self) -> int:
        return sum(self.by_status.values())


def overview(ctx: Context, breakers: Mapping[str, CircuitBreaker]) -> Overview:
    """Count payments by status and sync state, the due backlog, the hour's traffic, each
    gateway's breaker (`breakers`: the in-process sweeper's, empty when none runs) and the
    merchant notifications' backlog and endpoints (the numbers `/metrics` shows)."""
    now = ctx.clock()
    since = _minute_floor(now) - timedelta(minutes=CHART_MINUTES - 1)
    with ctx.read() as session:
        by_status = repository.count_by_status(session)
        by_sync_state = repository.count_by_sync_state(session)
        due_now = repository.due_backlog(session, now)
        oldest = repository.oldest_pending_created_at(session, WAITING)
        counts = repository.events_per_minute(
            session, since=since, sources=(Source.POLL.value, Source.WEBHOOK.value)
        )
        failures = repository.last_poll_failures(session, ignore=HELD_ERRORS)
        accounts = repository.gateway_accounts(session)
    return Overview(
        now=now,
        by_status={s.value: by_status.get(s.value, 0) for s in Status},
        by_sync_state={s.value: by_sync_state.get(s.value, 0) for s in SyncState},
        due_now=due_now,
        oldest_pending_age_s=max(0.0, (now - oldest).total_seconds()) if oldest else None,
        minutes=_minutes(since, counts),
        breakers=_breakers(sorted(set(ctx.gateways) | set(breakers)), breakers, failures),
        notifications=notify_stats(ctx),
        accounts=[
            AccountView(
                id=a.id,
                merchant_id=a.merchant_id,
                gateway=a.gateway,
                status=a.status,
                webhook_path=f"/webhooks/{a.gateway}/{a.id}",
                breaker=_state(breakers.get(breaker_key(a.gateway, a.id))),
            )
            for a in accounts
        ],
    )


def _state(breaker: CircuitBreaker | None) -> str:
    return breaker.state.value if breaker is not None else "unknown"


def _minute_floor(when: datetime) -> datetime:
    return when.replace(second=0, microsecond=0)


def _minutes(since: datetime, counts: Sequence[tuple[str, str, int]]) -> list[Minute]:
    """Lay the per-source counts on a row of CHART_MINUTES minutes, empty minutes as zero."""
    by_key = {(source, minute): count for source, minute, count in counts}
    row = []
    for offset in range(CHART_MINUTES):
        start = since + timedelta(minutes=offset)
        key = start.strftime("%Y-%m-%d %H:%M")
        row.append(
            Minute(
                start=start,
                polls=by_key.get((Source.POLL.value, key), 0),
                webhooks=by_key.get((Source.WEBHOOK.value, key), 0),
            )
        )
    return row


def _breakers(
    gateways: Sequence[str],
    breakers: Mapping[str, CircuitBreaker],
    failures: Mapping[str, tuple[datetime, str]],
) -> list[BreakerView]:
    views = []
    for gateway in gateways:
        breaker = breakers.get(gateway)
        failed_at, error = failures.get(gateway, (None, None))
        if breaker is not None and breaker.last_failure_at is not None:
            # This process saw the failure itself: fresher than what rows still show.
            failed_at, error = breaker.last_failure_at, breaker.last_failure
        is_open = breaker is not None and breaker.state is not BreakerState.CLOSED
        until = breaker.open_until if breaker is not None and is_open else None
        views.append(
            BreakerView(
                gateway=gateway,
                state=breaker.state.value if breaker else "unknown",
                failures=breaker.failures if breaker else 0,
                opened_at=(
                    until - timedelta(seconds=breaker.current_cooldown)
                    if breaker is not None and until is not None
                    else None
                ),
                open_until=until,
                last_failure_at=failed_at,
                last_failure=error,
            )
        )
    return views


def needs_a_human(
    ctx: Context, state: str | None, limit: int, cursor: str | None
) -> tuple[Sequence[Payment], str | None]:
    """Page through `needs_review` and `gave_up` payments (or one of them), oldest first."""
    states = [s.value for s in HUMAN_STATES]
    if state is not None:
        if state not in states:
            raise ValidationFailed(f"state must be one of: {', '.join(states)}")
        states = [state]
    after = page_start(limit, cursor)
    with ctx.read() as session:
        page = repository.payments_needing_a_human(
            session, states=states, limit=limit + 1, after=after
        )
    more = len(page) > limit
    page = page[:limit]
    return page, repository.encode_cursor(page[-1]) if more else None


def find(ctx: Context, term: str) -> Sequence[Payment]:
    """Find payments by our id, the merchant's reference or the gateway's id, newest first."""
    term = term.strip()
    if not term or len(term) > 200 or not _storable(term):
        raise ValidationFailed("give a payment id, merchant reference or gateway payment id")
    with ctx.read() as session:
        return repository.payments_matching(session, term, MAX_MATCHES)


def _storable(text: str) -> bool:
    """Say whether a text can be stored (PostgreSQL refuses NUL and lone surrogates)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def timeline(ctx: Context, payment_id: str) -> tuple[Payment, Sequence[PaymentEvent]]:
    """Read any merchant's payment and its whole timeline, oldest event first."""
    with ctx.read() as session:
        payment = repository.any_payment(session, payment_id)
        if payment is None:
            raise NotFound(f"no payment {payment_id}")
        return payment, repository.payment_events(session, payment_id)
