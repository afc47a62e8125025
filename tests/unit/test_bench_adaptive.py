"""The adaptive bench's model follows a payment the way the service's schedule does."""

from __future__ import annotations

import random
from datetime import timedelta

from bench.adaptive import START, Payment, follow
from reconciler.domain.policy import PollPolicy

POLICY = PollPolicy(first_delay=30.0)


def at(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def test_a_webhook_before_the_first_poll_costs_no_call() -> None:
    payment = Payment(START, START + at(10), START + at(12))
    followed = follow(payment, POLICY, random.Random(1).random)
    assert (followed.polls, followed.known, followed.by_poll) == (0, START + at(12), False)


def test_a_lost_webhook_is_found_by_the_first_poll_after_settlement() -> None:
    payment = Payment(START, START + at(10), None)
    followed = follow(payment, POLICY, random.Random(1).random)
    assert (followed.polls, followed.known, followed.by_poll) == (1, START + at(30), True)


def test_polls_back_off_until_the_payment_settles() -> None:
    payment = Payment(START, START + at(200), None)
    followed = follow(payment, POLICY, random.Random(1).random)
    assert followed.by_poll
    assert followed.polls >= 3  # 30 s, then about 30-60 s, then 60-120 s later ...
    assert followed.known >= payment.settled
