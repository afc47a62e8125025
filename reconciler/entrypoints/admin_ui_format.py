"""How the operator's page writes things for people: times, rates, the chart, notices.

Notices after an action are fixed message codes (`?msg=resolved&id=pay_…`), never text
from the URL: a link someone sends an operator cannot make the page say anything else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from reconciler.domain.status import Outcome
from reconciler.domain.sync import ReviewReason
from reconciler.services.operators import Minute

# Each code's words; `{id}`, `{n}` and `{outcome}` come from checked query parameters.
MESSAGES = {
    "refreshed": "{id} will be polled as soon as its refresh throttle allows",
    "reported": "the report on {id} was recorded: {outcome}",
    "reported_resolved": "the report on {id} was recorded ({outcome}) and its review resolved",
    "resolved": "the review of {id} is resolved",
    "retried": "delivery {id} is pending and due now",
    "recovered": "{n} failed deliveries of {id} are pending again",
    "recovered_one": "1 failed delivery of {id} is pending again",
    "signed_out": "you are signed out; the session is ended on the server too",
}
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_OUTCOMES = {o.value for o in Outcome}


def notice(args: Mapping[str, str]) -> str | None:
    """Return the words for the message code in the query, or None for anything else."""
    template = MESSAGES.get(args.get("msg", ""))
    if template is None:
        return None
    values = {"id": args.get("id", ""), "n": args.get("n", ""), "outcome": args.get("outcome", "")}
    if "{id}" in template and not _ID.fullmatch(values["id"]):
        return None
    if "{n}" in template and not (values["n"].isdigit() and len(values["n"]) <= 9):
        return None
    if "{outcome}" in template and values["outcome"] not in _OUTCOMES:
        return None
    return template.format(**values)


@dataclass(frozen=True)
class Guide:
    """What a reason for review means, and what usually closes it."""

    meaning: str
    action: str


# Per review reason (and for payments whose polling gave up): what it means, what to do.
GUIDES = {
    ReviewReason.UNKNOWN_TO_GATEWAY.value: Guide(
        "The gateway answers that it does not know this payment: a wrong gateway id, "
        "another account's payment, or one never created there.",
        "If the customer was never charged, settle it as canceled (or failed) with a note: "
        "one step, the merchant is told. If the id was wrong and the gateway knows it now, "
        "refresh it.",
    ),
    ReviewReason.CONFLICTING_REPORTS.value: Guide(
        "Two final reports disagree (e.g. failed after succeeded); the first one's status is "
        "kept until a person decides.",
        "Read the payment on the gateway's dashboard and report what it says there: a "
        "final status the rules take also resolves the review. Or resolve, keeping the "
        "status shown.",
    ),
    ReviewReason.LATE_SUCCESS.value: Guide(
        "Money was captured after the payment had been reported failed or canceled; its "
        "status is now succeeded (captured money is never dropped) and the merchant was told.",
        "Make sure the merchant fulfils the order or refunds the customer, then resolve "
        "with a note of what was done.",
    ),
    "gave_up": Guide(
        "Polling ran past its give-up age without a final status; nothing polls it now.",
        "Refresh to poll it again (the schedule starts afresh), or report the status the "
        "gateway's dashboard shows.",
    ),
}


def guide(reason: str | None, sync_state: str) -> Guide | None:
    """Return the guide for a payment in the review queue, or None when it is not there."""
    if sync_state == "gave_up":
        return GUIDES["gave_up"]
    if sync_state == "needs_review":
        return GUIDES.get(reason or "", GUIDES[ReviewReason.CONFLICTING_REPORTS.value])
    return None


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    height: float
    label: str


@dataclass(frozen=True)
class Chart:
    """An SVG bar chart's geometry: one slot per minute, polls and webhooks side by side."""

    width: int
    height: int
    polls: list[Bar]
    webhooks: list[Bar]
    slots: list[tuple[float, str]]  # x and tooltip of each minute
    peak: int
    total_polls: int
    total_webhooks: int
    first: datetime | None
    last: datetime | None


def chart(minutes: list[Minute], *, slot: int = 10, height: int = 120) -> Chart:
    """Lay out the per-minute counts as bars scaled to the busiest minute."""
    peak = max([m.polls for m in minutes] + [m.webhooks for m in minutes] + [1])
    usable = height - 4

    def bar(x: float, count: int, what: str, minute: Minute) -> Bar:
        h = round(usable * count / peak, 1)
        return Bar(x, height - h, h, f"{minute.start:%H:%M} UTC: {count} {what}")

    polls: list[Bar] = []
    webhooks: list[Bar] = []
    slots: list[tuple[float, str]] = []
    for i, minute in enumerate(minutes):
        x = float(i * slot)
        polls.append(bar(x + 1, minute.polls, "polls", minute))
        webhooks.append(bar(x + slot / 2, minute.webhooks, "webhooks", minute))
        slots.append(
            (x, f"{minute.start:%H:%M} UTC: {minute.polls} polls, {minute.webhooks} webhooks")
        )
    return Chart(
        width=slot * len(minutes),
        height=height,
        polls=polls,
        webhooks=webhooks,
        slots=slots,
        peak=peak,
        total_polls=sum(m.polls for m in minutes),
        total_webhooks=sum(m.webhooks for m in minutes),
        first=minutes[0].start if minutes else None,
        last=minutes[-1].start if minutes else None,
    )


def duration(seconds: float | None) -> str:
    """Format a length of time for people: `2 h 5 min`, `40 s`, a dash when there is none."""
    if seconds is None:
        return "–"
    seconds = int(seconds)
    for unit, size, smaller in (("d", 86400, 3600), ("h", 3600, 60), ("min", 60, 1)):
        if seconds >= size:
            whole, rest = divmod(seconds, size)
            part = rest // smaller
            return f"{whole} {unit} {duration(part * smaller)}" if part else f"{whole} {unit}"
    return f"{seconds} s"


def percent(rate: float | None) -> str:
    """Format a share for people: `97.5 %`, `100 %`, or a dash when there is none."""
    if rate is None:
        return "–"
    shown = f"{rate * 100:.1f}".removesuffix(".0")
    if shown == "100" and rate < 1:
        shown = "99.9"  # never round a failure away
    return f"{shown} %"


def when(at: datetime | None) -> str:
    """Format a time for people: `2026-11-28 10:00:03 UTC` (the markup keeps RFC 3339)."""
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if at is not None else ""


def age(now: datetime, then: datetime | None) -> str:
    """Format how long ago `then` was."""
    if then is None:
        return "–"
    return duration((now - then.astimezone(UTC)).total_seconds())
