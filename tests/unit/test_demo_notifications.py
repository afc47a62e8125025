"""The demo's merchant endpoint: its scripted faults, its receipts and how they are scored."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook
from support.clock import FakeClock
from werkzeug.test import Client

from reconciler.demo.profile import Profile
from reconciler.demo.receiver import Answer, EndpointFaults, Receiver
from reconciler.demo.report import render
from reconciler.demo.scoring import Collected, exit_code, notifications, score
from reconciler.demo.stack import new_webhook_secret

T = "2026-11-28T10:00:{:06.3f}Z"
FAULTS = EndpointFaults(p_503=0.10, p_slow=0.05, slow_s=3.0, outage_at_s=5.0, outage_s=4.0)


@pytest.mark.parametrize(
    ("elapsed_s", "roll", "answer"),
    [
        (None, 0.5, Answer.OK),  # before the traffic starts, no outage
        (None, 0.01, Answer.SLOW),
        (1.0, 0.049, Answer.SLOW),
        (1.0, 0.05, Answer.ERROR),
        (1.0, 0.149, Answer.ERROR),
        (1.0, 0.151, Answer.OK),
        (4.99, 0.5, Answer.OK),
        (5.0, 0.5, Answer.OUTAGE),
        (8.99, 0.01, Answer.OUTAGE),  # the outage outranks the other faults
        (9.0, 0.5, Answer.OK),
    ],
)
def test_the_endpoint_answers_as_its_fault_script_says(
    elapsed_s: float | None, roll: float, answer: Answer
) -> None:
    assert FAULTS.answer(elapsed_s, roll) is answer


def test_without_an_outage_the_window_never_opens() -> None:
    assert EndpointFaults(outage_at_s=5.0, outage_s=0.0).answer(6.0, 0.5) is Answer.OK


def test_the_profile_scripts_answers_a_second_past_the_delivery_timeout() -> None:
    faults = EndpointFaults.of(Profile(notify_timeout_s=2.0, endpoint_p_503=0.2))
    assert (faults.slow_s, faults.p_503) == (3.0, 0.2)


def _event(sequence: int, status: str = "succeeded") -> dict[str, Any]:
    return {
        "id": f"evt_{sequence}",
        "type": f"payment.{status}",
        "created_at": T.format(sequence),
        "sequence": sequence,
        "data": {"id": "pay_1", "status": status},
    }


def _post(client: Client, secret: str, event: dict[str, Any]) -> Any:
    body = json.dumps(event)
    at = datetime.now(UTC)  # the library checks the timestamp against the real time
    signature = Webhook(secret).sign(msg_id=event["id"], timestamp=at, data=body)
    headers = {
        "webhook-id": event["id"],
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "Content-Type": "application/json",
    }
    return client.post("/", data=body, headers=headers)


@pytest.fixture
def secret() -> str:
    return new_webhook_secret()


def _receiver(secret: str, *rolls: float, elapsed_s: float = 1.0) -> tuple[Receiver, list[float]]:
    slept: list[float] = []
    clock = FakeClock()
    moments = iter([0.0, elapsed_s])
    receiver = Receiver(
        FAULTS,
        rand=iter(rolls).__next__,
        clock=clock,
        monotonic=lambda: next(moments),
        sleep=slept.append,
    )
    receiver.arm(secret)
    receiver.begin()
    return receiver, slept


@pytest.mark.parametrize(
    ("roll", "elapsed_s", "status", "answer", "retry_after", "slept"),
    [
        (0.5, 1.0, 200, "ok", None, []),
        (0.10, 1.0, 503, "503", "1", []),
        (0.01, 1.0, 200, "slow", None, [3.0]),
        (0.5, 6.0, 503, "outage", None, []),
    ],
)
def test_the_receiver_verifies_records_and_answers_each_delivery(
    secret: str,
    roll: float,
    elapsed_s: float,
    status: int,
    answer: str,
    retry_after: str | None,
    slept: list[float],
) -> None:
    receiver, sleeps = _receiver(secret, roll, elapsed_s=elapsed_s)

    response = _post(Client(receiver), secret, _event(3))

    assert response.status_code == status
    assert response.headers.get("Retry-After") == retry_after
    assert sleeps == slept
    assert receiver.receipts() == [
        {
            "webhook_id": "evt_3",
            "arrived_at": "2026-11-28T10:00:00.000000Z",
            "answer": answer,
            "type": "payment.succeeded",
            "created_at": T.format(3),
            "sequence": 3,
            "payment_id": "pay_1",
            "payment_status": "succeeded",
        }
    ]


def test_a_delivery_signed_with_another_secret_is_rejected_and_recorded(secret: str) -> None:
    receiver, _ = _receiver(secret, 0.5)

    response = _post(Client(receiver), new_webhook_secret(), _event(1))

    assert response.status_code == 400
    assert [(r["webhook_id"], r["answer"], r["type"]) for r in receiver.receipts()] == [
        ("evt_1", "rejected", None)
    ]


# Scoring: three payments; pay_1's event was retried (503, then ok), pay_2's went through
# at once, pay_3 is still pending at the gateway (no event expected).


def _delivery(event_id: str, payment_id: str, status: str, attempts: int) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_type": "payment.succeeded",
        "payment_id": payment_id,
        "status": status,
        "attempts": attempts,
    }


def _receipt(event_id: str, payment_id: str, second: float, answer: str) -> dict[str, Any]:
    return {
        "webhook_id": event_id,
        "arrived_at": T.format(second),
        "answer": answer,
        "type": "payment.succeeded",
        "created_at": T.format(1 if event_id == "evt_1" else 2),
        "sequence": 1,
        "payment_id": payment_id,
        "payment_status": "succeeded",
    }


def _collected(
    *,
    deliveries: list[dict[str, Any]] | None = None,
    receipts: list[dict[str, Any]] | None = None,
    ours: list[dict[str, Any]] | None = None,
) -> Collected:
    return Collected(
        ours=ours
        if ours is not None
        else [
            {"id": "pay_1", "status": "succeeded", "sync": {"state": "settled"}},
            {"id": "pay_2", "status": "succeeded", "sync": {"state": "settled"}},
            {"id": "pay_3", "status": "pending", "sync": {"state": "polling"}},
        ],
        truth={},
        calls={"payments": {}, "totals": {"all": 0, "by_kind": {}, "by_answer": {}}},
        webhooks={"deliveries": [], "totals": {"events": 0, "delivered_ok": 0}, "losses": []},
        deliveries=deliveries
        if deliveries is not None
        else [
            _delivery("evt_1", "pay_1", "delivered", 2),
            _delivery("evt_2", "pay_2", "delivered", 1),
        ],
        receipts=receipts
        if receipts is not None
        else [
            _receipt("evt_1", "pay_1", 1.5, "503"),
            _receipt("evt_2", "pay_2", 2.25, "ok"),
            _receipt("evt_1", "pay_1", 4.0, "ok"),
            _receipt("evt_1", "pay_1", 5.0, "ok"),  # a redelivery: the first 200 counts
        ],
    )


def test_notifications_are_scored_from_the_api_and_the_receivers_receipts() -> None:
    scored = notifications(_collected())

    assert scored is not None
    assert {k: scored[k] for k in ("events", "deliveries", "delivered", "failed", "pending")} == {
        "events": 2,
        "deliveries": 2,
        "delivered": 2,
        "failed": 0,
        "pending": 0,
    }
    assert scored["attempts"] == 3
    assert (scored["attempts_per_delivery"]["mean"], scored["attempts_per_delivery"]["max"]) == (
        1.5,
        2,
    )
    assert scored["answers"] == {"ok": 3, "503": 1, "slow": 0, "outage": 0, "rejected": 0}
    # From each event's created_at to the receiver's first 200: 3 s and 0.25 s.
    assert scored["latency_s"]["n"] == 2
    assert scored["latency_s"]["max"] == 3.0
    assert scored["latency_s"]["p50"] == 1.625
    # To the first attempt, whatever its answer: 0.5 s (a 503) and 0.25 s.
    assert (scored["first_attempt_s"]["p50"], scored["first_attempt_s"]["max"]) == (0.375, 0.5)
    assert (scored["lost"], scored["lost_ids"]) == (0, [])
    assert scored["merchant_view"] == {"settled": 2, "matches": 2}


@pytest.mark.parametrize(
    ("deliveries", "receipts", "lost_ids", "pending"),
    [
        # The API says delivered, but the receiver never answered it 200 in time.
        (
            None,
            [_receipt("evt_1", "pay_1", 4.0, "ok"), _receipt("evt_2", "pay_2", 2.5, "slow")],
            ["evt_2"],
            0,
        ),
        # The service gave up on it.
        (
            [_delivery("evt_1", "pay_1", "delivered", 2), _delivery("evt_2", "pay_2", "failed", 9)],
            None,
            ["evt_2"],
            0,
        ),
        # A settled payment was never announced at all.
        ([_delivery("evt_1", "pay_1", "delivered", 2)], None, ["pay_2"], 0),
        # Still pending when the demo stopped waiting: not lost, but not delivered either.
        (
            [
                _delivery("evt_1", "pay_1", "delivered", 2),
                _delivery("evt_2", "pay_2", "pending", 3),
            ],
            [_receipt("evt_1", "pay_1", 4.0, "ok")],
            [],
            1,
        ),
    ],
)
def test_an_event_is_lost_unless_delivered_and_verified_by_the_receiver(
    deliveries: list[dict[str, Any]] | None,
    receipts: list[dict[str, Any]] | None,
    lost_ids: list[str],
    pending: int,
) -> None:
    scored = notifications(_collected(deliveries=deliveries, receipts=receipts))

    assert scored is not None
    assert (scored["lost"], scored["lost_ids"], scored["pending"]) == (
        len(lost_ids),
        lost_ids,
        pending,
    )


def test_a_review_flag_must_be_announced_too() -> None:
    ours = [{"id": "pay_1", "status": "succeeded", "sync": {"state": "needs_review"}}]
    deliveries = [_delivery("evt_1", "pay_1", "delivered", 1)]
    receipts = [_receipt("evt_1", "pay_1", 4.0, "ok")]

    scored = notifications(_collected(ours=ours, deliveries=deliveries, receipts=receipts))

    assert scored is not None
    assert scored["lost_ids"] == ["pay_1"]


def test_the_merchants_view_is_the_latest_sequence_it_answered_in_time() -> None:
    older = _receipt("evt_1", "pay_1", 4.0, "ok") | {"payment_status": "failed"}
    newer = _receipt("evt_2", "pay_1", 3.0, "ok") | {"sequence": 2}
    ours = [{"id": "pay_1", "status": "succeeded", "sync": {"state": "settled"}}]
    deliveries = [
        _delivery("evt_1", "pay_1", "delivered", 1) | {"event_type": "payment.failed"},
        _delivery("evt_2", "pay_1", "delivered", 1),
    ]

    scored = notifications(_collected(ours=ours, deliveries=deliveries, receipts=[older, newer]))

    assert scored is not None
    assert scored["merchant_view"] == {"settled": 1, "matches": 1}


def test_a_run_without_an_endpoint_has_no_notifications_section_to_score() -> None:
    assert notifications(Collected(ours=[], truth={}, calls={}, webhooks={})) is None


@pytest.mark.parametrize(
    ("changes", "notified", "code"),
    [
        ({}, None, 0),
        ({}, {"lost": 0, "pending": 0}, 0),
        ({}, {"lost": 1, "pending": 0}, 1),
        ({"not_settled": 1}, {"lost": 1, "pending": 0}, 1),
        ({}, {"lost": 0, "pending": 2}, 3),
        ({"wrong": 1}, {"lost": 0, "pending": 2}, 1),
    ],
)
def test_a_lost_notification_fails_the_run_like_a_wrong_payment(
    changes: dict[str, int], notified: dict[str, int] | None, code: int
) -> None:
    report = {"wrong": 0, "not_settled": 0, "not_created_at_gateway": 0} | changes
    assert exit_code(report | {"notifications": notified}) == code


def _report(**notified: Any) -> dict[str, Any]:
    report = score(_collected())
    report["notifications"] |= notified
    return report


def _lines(text: str, label: str) -> list[str]:
    """The lines of one section: its labelled line and the indented ones after it."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"  {label} "))
    end = start + 1
    while end < len(lines) and lines[end].startswith(" " * 18):
        end += 1
    return lines[start:end]


def _section(text: str, label: str) -> list[str]:
    return [line.strip() for line in _lines(text, label)]


def test_the_report_states_the_endpoint_faults_and_the_delivery_schedule() -> None:
    text = render(_report(), Profile(), 12.0)

    assert _section(text, "faults")[1] == (
        "endpoint 10% 503, 5% answered after 3 s (timeout 2 s); 4 s outage at +5 s"
    )
    assert _section(text, "notify policy") == [
        "notify policy   at once, then 0.5 s x2 up to 4 s, give up after 1 h; timeout 2 s",
        "production: at once, then 5 s x2 up to 10 h, give up after 3 d; timeout 15 s",
    ]


def test_the_notifications_section_counts_attempts_latency_and_losses() -> None:
    text = render(_report(), Profile(), 12.0)

    assert _section(text, "notifications") == [
        "notifications   2 events, 2 deliveries: 2 delivered, 0 failed, 0 pending; 0 lost",
        "attempts/delivery mean 1.50, p99 1.99, max 2 (3 attempts)",
        "4 requests: 3 ok, 1 503, 0 too late, 0 in the outage, 0 bad signature",
        "status change -> delivered: p50 1.62 s  p99 2.97 s  max 3.00 s",
        "status change -> first attempt: p50 0.38 s  p99 0.50 s  max 0.50 s",
        "waits: at most 4 attempts in flight per endpoint (an answer past the timeout holds",
        "its slot for 2 s); in the outage the breaker holds deliveries back (cooldown 2 s",
        "doubling to 8 s)",
        "receiver's latest event matches the final status for 2/2 settled payments",
    ]
    assert _section(text, "verdict") == [
        "verdict         OK: every settled payment matches the gateway's ground truth",
        "every status change reached the endpoint, signature verified: 0 lost",
    ]
    ours = ("notify policy", "notifications", "verdict")
    assert max(len(line) for label in ours for line in _lines(text, label)) <= 100


def test_a_lost_notification_turns_the_verdict_into_a_failure() -> None:
    text = render(_report(lost=1, lost_ids=["evt_2"]), Profile(), 12.0)

    assert _section(text, "verdict") == [
        "verdict         FAIL: 1 notification(s) lost: evt_2",
        "every settled payment matches the gateway's ground truth",
    ]


def test_without_notifications_the_report_says_so_and_keeps_the_old_faults_line() -> None:
    profile = Profile(notifications=False)
    data = _collected()
    data.deliveries = data.receipts = None
    text = render(score(data), profile, 12.0)

    assert len(_section(text, "faults")) == 1
    assert "notify policy" not in text
    assert _section(text, "notifications") == [
        "notifications   none: no merchant endpoint in this run"
    ]
