"""The status rules: every (current, reported) pair, and report orderings."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from reconciler.domain.status import RULES, Decision, Outcome, Report, Status, decide

P, S, F, C = Status.PENDING, Status.SUCCEEDED, Status.FAILED, Status.CANCELED
T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
T_EARLIER = T0 - timedelta(seconds=5)
T_LATER = T0 + timedelta(seconds=5)

# The gateway word a payment in each status would carry.
GATEWAY_WORD = {P: "processing", S: "succeeded", F: "failed", C: "canceled"}


@dataclass(frozen=True)
class Row:
    current: Status
    reported: Status
    outcome: Outcome
    after: Status
    flag: bool = False
    current_gateway_status: str | None = None
    reported_gateway_status: str | None = None
    last_event_at: datetime | None = T0
    occurred_at: datetime | None = T_LATER

    def decide(self) -> Decision:
        report = Report(
            self.reported,
            self.reported_gateway_status or GATEWAY_WORD[self.reported],
            self.occurred_at,
        )
        current_gw = self.current_gateway_status or GATEWAY_WORD[self.current]
        return decide(self.current, current_gw, self.last_event_at, report)


TABLE = {
    # pending -> pending is judged by time and by the gateway's own word.
    "pending_then_older_pending_is_stale": Row(
        P,
        P,
        Outcome.STALE,
        P,
        current_gateway_status="requires_action",
        reported_gateway_status="processing",
        occurred_at=T_EARLIER,
    ),
    # Staleness wins even when the older report repeats the current gateway word.
    "pending_then_older_identical_pending_is_stale": Row(
        P, P, Outcome.STALE, P, occurred_at=T_EARLIER
    ),
    "pending_then_same_gateway_status_is_unchanged": Row(P, P, Outcome.UNCHANGED, P),
    "pending_then_new_gateway_status_is_applied": Row(
        P, P, Outcome.APPLIED, P, reported_gateway_status="requires_action"
    ),
    # A report at exactly the last event's time is not older: it is applied.
    "pending_then_pending_at_same_instant_is_applied": Row(
        P, P, Outcome.APPLIED, P, reported_gateway_status="requires_action", occurred_at=T0
    ),
    # Polls carry no event time; without one, time cannot make a report stale.
    "pending_then_undated_pending_is_applied": Row(
        P, P, Outcome.APPLIED, P, reported_gateway_status="requires_action", occurred_at=None
    ),
    "pending_then_succeeded_is_applied": Row(P, S, Outcome.APPLIED, S),
    "pending_then_failed_is_applied": Row(P, F, Outcome.APPLIED, F),
    "pending_then_canceled_is_applied": Row(P, C, Outcome.APPLIED, C),
    # A terminal report settles a pending payment even if it is older than the last
    # non-terminal event: time ordering only matters between non-terminal reports.
    "pending_then_older_succeeded_is_still_applied": Row(
        P, S, Outcome.APPLIED, S, occurred_at=T_EARLIER
    ),
    "succeeded_then_pending_is_stale": Row(S, P, Outcome.STALE, S),
    "failed_then_pending_is_stale": Row(F, P, Outcome.STALE, F),
    "canceled_then_pending_is_stale": Row(C, P, Outcome.STALE, C),
    "succeeded_then_succeeded_is_unchanged": Row(S, S, Outcome.UNCHANGED, S),
    "failed_then_failed_is_unchanged": Row(F, F, Outcome.UNCHANGED, F),
    "canceled_then_canceled_is_unchanged": Row(C, C, Outcome.UNCHANGED, C),
    # Captured money outranks a terminal failure: the status moves, and a person looks.
    "failed_then_succeeded_is_a_late_success_flagged_for_review": Row(
        F, S, Outcome.LATE_SUCCESS, S, flag=True
    ),
    "canceled_then_succeeded_is_a_late_success_flagged_for_review": Row(
        C, S, Outcome.LATE_SUCCESS, S, flag=True
    ),
    # The reverse never un-captures money: the status stays, the conflict is flagged.
    "succeeded_then_failed_is_a_conflict_that_keeps_succeeded": Row(
        S, F, Outcome.CONFLICT, S, flag=True
    ),
    "succeeded_then_canceled_is_a_conflict_that_keeps_succeeded": Row(
        S, C, Outcome.CONFLICT, S, flag=True
    ),
    "failed_then_canceled_is_a_conflict": Row(F, C, Outcome.CONFLICT, F, flag=True),
    "canceled_then_failed_is_a_conflict": Row(C, F, Outcome.CONFLICT, C, flag=True),
}


@pytest.mark.parametrize("row", list(TABLE.values()), ids=list(TABLE))
def test_status_rule(row: Row) -> None:
    decision = row.decide()

    assert (decision.outcome, decision.status, decision.flag_review) == (
        row.outcome,
        row.after,
        row.flag,
    )
    assert decision.moves == (row.outcome in (Outcome.APPLIED, Outcome.LATE_SUCCESS))


def test_the_table_covers_every_pair_of_statuses() -> None:
    pairs = {(row.current, row.reported) for row in TABLE.values()}

    assert pairs == set(itertools.product(Status, repeat=2))
    assert set(RULES) | {(P, P)} == pairs


def test_late_success_after_failure_is_flagged_for_review() -> None:
    decision = decide(F, "failed", T0, Report(S, "captured", T_LATER))

    assert decision.status is S
    assert decision.flag_review
    assert decision.moves
    assert "captured money wins" in decision.reason


def test_failure_after_success_keeps_the_money_and_explains_why() -> None:
    decision = decide(S, "succeeded", T0, Report(F, "failed", T_LATER))

    assert decision.status is S
    assert not decision.moves
    assert decision.reason == "failed reported after succeeded"


def test_a_stale_report_says_why_it_was_ignored() -> None:
    assert decide(S, "succeeded", T0, Report(P, "processing")).reason == (
        "non-terminal report after succeeded"
    )
    assert decide(P, "processing", T0, Report(P, "x", T_EARLIER)).reason == (
        "older than the last applied report"
    )


def test_only_pending_is_not_terminal() -> None:
    assert [s for s in Status if not s.terminal] == [P]


@dataclass
class PaymentRow:
    """A payment row as `apply_report` keeps it, reduced to what `decide` reads."""

    status: Status = P
    gateway_status: str | None = None
    last_event_at: datetime | None = None
    flagged: bool = False

    def apply(self, report: Report) -> Decision:
        decision = decide(self.status, self.gateway_status, self.last_event_at, report)
        if decision.moves:
            self.status = decision.status
            self.gateway_status = report.gateway_status
            if report.occurred_at is not None and (
                self.last_event_at is None or report.occurred_at > self.last_event_at
            ):
                self.last_event_at = report.occurred_at
        self.flagged = self.flagged or decision.flag_review
        return decision


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


JOURNEY = [
    Report(P, "processing", at(1)),
    Report(P, "requires_action", at(2)),
    Report(S, "succeeded", at(3)),
]


@pytest.mark.parametrize(
    "order",
    list(itertools.permutations(JOURNEY)),
    ids=lambda o: "-".join(r.gateway_status for r in o),
)
def test_a_journey_delivered_in_any_order_ends_succeeded(order: tuple[Report, ...]) -> None:
    row = PaymentRow()

    for report in order:
        row.apply(report)

    assert (row.status, row.gateway_status) == (S, "succeeded")
    assert not row.flagged


def test_an_out_of_order_pending_report_does_not_rewind_the_gateway_status() -> None:
    row = PaymentRow()

    row.apply(JOURNEY[1])
    decision = row.apply(JOURNEY[0])

    assert decision.outcome is Outcome.STALE
    assert (row.gateway_status, row.last_event_at) == ("requires_action", at(2))


@pytest.mark.parametrize(
    ("order", "flagged"),
    [
        # A late authorisation: captured money wins, and a person looks.
        ((Report(F, "failed", at(1)), Report(S, "succeeded", at(2))), True),
        # The failure happened before the capture and merely arrived late: stale.
        ((Report(S, "succeeded", at(2)), Report(F, "failed", at(1))), False),
        # A failure after the capture contradicts it: kept, flagged.
        ((Report(S, "succeeded", at(1)), Report(F, "failed", at(2))), True),
    ],
    ids=["failed-then-succeeded", "older-failure-arrives-late", "failure-after-capture"],
)
def test_failure_and_success_in_either_order_end_succeeded(
    order: tuple[Report, Report], flagged: bool
) -> None:
    row = PaymentRow()

    for report in order:
        row.apply(report)

    assert (row.status, row.gateway_status) == (S, "succeeded")
    assert row.flagged is flagged


def test_a_success_older_than_a_failure_still_wins() -> None:
    row = PaymentRow()

    row.apply(Report(F, "failed", at(2)))
    decision = row.apply(Report(S, "succeeded", at(1)))

    assert decision.outcome is Outcome.LATE_SUCCESS
    assert (row.status, row.flagged) == (S, True)
