"""The rules a report meets before the status rules: amounts, ownership, abandonment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reconciler.domain.amounts import format_minor, mismatch
from reconciler.domain.ownership import abandoned, claims, foreign, hidden
from reconciler.domain.payment import Reporting, Snapshot, apply
from reconciler.domain.policy import PollPolicy
from reconciler.domain.status import Outcome, Report, Source, Status

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
POLICY = PollPolicy(abandon_after=3600)


def snapshot(**changes: object) -> Snapshot:
    fields: dict[str, object] = {
        "id": "pay_1",
        "merchant_id": "mer_a",
        "merchant_reference": "order-1",
        "gateway": "stripe",
        "gateway_payment_id": "pi_1",
        "idempotency_key": "idem_1",
        "amount": 250_000_00,
        "currency": "INR",
        "status": "pending",
        "gateway_status": "processing",
        "status_source": None,
        "created_at": T0,
        "updated_at": T0,
        "settled_at": None,
        "last_event_at": None,
        "review_code": None,
        "review_reason": None,
        "sync_state": "polling",
        "poll_attempts": 1,
        "poll_failures": 0,
        "next_poll_at": T0 + timedelta(seconds=60),
        "last_polled_at": T0,
        "last_delay_s": 30.0,
        "last_error": None,
        "give_up_at": T0 + timedelta(hours=72),
        "notification_sequence": 0,
        "version": 1,
    }
    fields.update(changes)
    return Snapshot(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("amount", "currency", "words"),
    [
        (100, "INR", "1.00 INR"),
        (250_000_00, "inr", "250000.00 INR"),
        (500, "JPY", "500 JPY"),  # no minor unit
        (1234, "KWD", "1.234 KWD"),  # three decimals
        (5, "EUR", "0.05 EUR"),
    ],
)
def test_amounts_read_as_people_write_them(amount: int, currency: str, words: str) -> None:
    assert format_minor(amount, currency) == words


def test_a_mismatch_names_both_amounts_and_a_match_or_no_amount_says_nothing() -> None:
    assert mismatch(250_000_00, "INR", 100, "INR") == (
        "the gateway reports 1.00 INR; registered 250000.00 INR"
    )
    assert mismatch(100, "USD", 100, "EUR") == ("the gateway reports 1.00 EUR; registered 1.00 USD")
    assert mismatch(100, "USD", 100, "usd") is None
    assert mismatch(100, "USD", None, None) is None


def report(**changes: object) -> Report:
    fields: dict[str, object] = {"status": Status.SUCCEEDED, "gateway_status": "succeeded"}
    fields.update(changes)
    return Report(**fields)  # type: ignore[arg-type]


def test_a_mismatched_capture_keeps_the_status_and_asks_a_person() -> None:
    change = apply(
        snapshot(),
        Reporting(report(amount=100, currency="INR"), Source.WEBHOOK),
        POLICY,
        T0 + timedelta(minutes=5),
        lambda: 0.5,
    )
    assert change.after.status == "pending"
    assert (change.after.sync_state, change.after.review_code) == (
        "needs_review",
        "amount_mismatch",
    )
    assert change.after.last_error == "the gateway reports 1.00 INR; registered 250000.00 INR"
    assert change.entry is not None and change.entry.outcome is Outcome.AMOUNT_MISMATCH
    assert [e.value for e in change.notify] == ["payment.needs_review"]


@pytest.mark.parametrize(
    ("account", "owner", "expected"),
    [
        ("default", "mer_b", True),
        ("default", "mer_a", False),
        ("default", None, False),  # no tag: nothing to check
        ("gwa_1", "mer_b", False),  # a merchant's own account holds only its own payments
    ],
)
def test_a_tag_naming_another_merchant_on_the_shared_account_is_foreign(
    account: str, owner: str | None, expected: bool
) -> None:
    assert foreign(account, "mer_a", owner) is expected


@pytest.mark.parametrize(
    ("shadow", "owner", "is_hidden", "is_claimed"),
    [
        (True, None, True, False),  # no tag: the first registration tracks it
        (True, "mer_b", True, False),  # tagged for another merchant
        (True, "mer_a", False, True),  # tagged for this row's merchant: it takes it over
        (False, None, False, False),
        (False, "mer_b", True, False),
    ],
)
def test_a_shadow_shows_nothing_unless_the_tag_names_its_merchant(
    shadow: bool, owner: str | None, is_hidden: bool, is_claimed: bool
) -> None:
    row = snapshot(shadow=shadow)
    assert (hidden(row, owner), claims(row, owner)) == (is_hidden, is_claimed)


def test_a_shadow_whose_merchant_the_tag_names_tracks_the_payment_from_then_on() -> None:
    change = apply(
        snapshot(shadow=True, amount=100),
        Reporting(
            report(status=Status.SUCCEEDED, amount=100, currency="INR", owner="mer_a"),
            Source.POLL,
            polled=True,
        ),
        POLICY,
        T0 + timedelta(minutes=5),
        lambda: 0.5,
    )
    assert (change.after.status, change.after.shadow) == ("succeeded", False)


def test_a_shadow_row_is_told_what_an_unknown_id_is_told() -> None:
    change = apply(
        snapshot(shadow=True),
        Reporting(report(amount=100, currency="INR"), Source.POLL, polled=True),
        POLICY,
        T0 + timedelta(minutes=5),
        lambda: 0.5,
    )
    assert (change.after.status, change.after.review_code) == ("pending", "unknown_to_gateway")
    assert change.entry is not None
    assert change.entry.detail == {"error": "the gateway does not know this payment"}


def test_a_foreign_report_shows_nothing_of_the_payment() -> None:
    change = apply(
        snapshot(),
        Reporting(report(amount=100, currency="INR", owner="mer_b"), Source.POLL, polled=True),
        POLICY,
        T0 + timedelta(minutes=5),
        lambda: 0.5,
    )
    assert (change.after.status, change.after.review_code) == ("pending", "unknown_to_gateway")
    assert change.entry is not None
    assert change.entry.detail == {"error": "the gateway does not know this payment"}
    assert change.entry.gateway_status is None


@pytest.mark.parametrize(
    ("waiting", "status", "age_s", "expected"),
    [
        (True, Status.PENDING, 3600, True),
        (True, Status.PENDING, 3599, False),  # not yet
        (False, Status.PENDING, 7200, False),  # the gateway is processing it: give-up rule
        (True, Status.SUCCEEDED, 7200, False),  # a terminal report is never abandonment
    ],
)
def test_only_a_payment_waiting_for_its_customer_past_abandon_after_is_abandoned(
    waiting: bool, status: Status, age_s: int, expected: bool
) -> None:
    got = report(status=status, gateway_status="requires_payment_method", waiting=waiting)
    assert abandoned("pending", T0, got, POLICY, T0 + timedelta(seconds=age_s)) is expected


def test_an_abandoned_payment_is_canceled_with_its_reason_and_settles() -> None:
    change = apply(
        snapshot(gateway_status="requires_payment_method"),
        Reporting(
            report(status=Status.PENDING, gateway_status="requires_payment_method", waiting=True),
            Source.POLL,
            polled=True,
        ),
        POLICY,
        T0 + timedelta(hours=2),
        lambda: 0.5,
    )
    assert (change.after.status, change.after.cancel_reason) == ("canceled", "abandoned")
    assert change.after.sync_state == "settled"
    assert [e.value for e in change.notify] == ["payment.canceled"]


def test_a_waiting_payment_is_polled_when_it_is_to_be_abandoned() -> None:
    now = T0 + timedelta(minutes=50)
    change = apply(
        snapshot(last_delay_s=1800.0),
        Reporting(
            report(status=Status.PENDING, gateway_status="requires_action", waiting=True),
            Source.POLL,
            polled=True,
        ),
        POLICY,
        now,
        lambda: 0.99,
    )
    assert change.after.next_poll_at == T0 + timedelta(seconds=3600)
