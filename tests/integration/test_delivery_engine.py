"""Merchant notifications delivered by the engine: real receivers on loopback, real signatures.

Every test drives the service's own sweep against real HTTP receivers (tests/notifyhelpers)
on SQLite and PostgreSQL, and checks what the receivers got with the `standardwebhooks`
library. Time is a FakeClock the test moves, except where the point is that nothing waits
for a slow call (there the engine runs on the real clock, and the assertions are about
what had happened when, never about how long it took).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from pathlib import Path

import pytest
from standardwebhooks.webhooks import WebhookVerificationError
from support.app import SECRETS_KEY, SIM_SECRET, make_settings
from support.clock import FakeClock
from support.receiver import Answer, Received, Receiver, run_receiver
from support.shop import Shop, deliver_all, deliveries, events, eventually, pending, verified
from support.simulator import Simulator

from reconciler.bootstrap import Context, bootstrap
from reconciler.config import Settings
from reconciler.services.sweep import Sweeper


@pytest.fixture
def notify_ctx(db_url: str, simulator: Simulator, clock: FakeClock) -> Iterator[Context]:
    settings = make_settings(db_url, simulator.url, notify_allow_private=1)
    context = bootstrap(settings, clock=clock, rand=random.Random(3).random)
    yield context
    context.close()


@pytest.fixture
def shop(notify_ctx: Context, simulator: Simulator) -> Shop:
    return Shop(notify_ctx, simulator)


@pytest.fixture
def sweeper(notify_ctx: Context) -> Iterator[Sweeper]:
    running = Sweeper(notify_ctx)
    yield running
    running.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with run_receiver() as running:
        yield running


@pytest.fixture
def second_receiver() -> Iterator[Receiver]:
    with run_receiver() as running:
        yield running


def first_attempt_fails(receiver: Receiver) -> Callable[[Received], Answer]:
    """Answer 503 to the first request of each webhook-id and 200 to the rest."""
    seen: Counter[str] = Counter()

    def answer(request: Received) -> Answer:
        seen[request.webhook_id] += 1
        return (503, {}) if seen[request.webhook_id] == 1 else (200, {})

    return answer


def test_a_status_change_is_delivered_signed_to_the_merchants_endpoint(
    shop: Shop, sweeper: Sweeper, receiver: Receiver, clock: FakeClock
) -> None:
    endpoint = shop.endpoint(receiver.url + "/hooks")
    pid, gid = shop.payment("n1")
    shop.report(gid, "succeeded")

    report = sweeper.sweep_once(clock.now)

    assert report.deliveries == {"2xx": 1}
    [delivery] = receiver.received
    payload = verified(delivery, endpoint.secret)
    assert payload["type"] == "payment.succeeded"
    assert payload["data"]["id"] == pid
    assert payload["data"]["status"] == "succeeded"
    assert payload["sequence"] == 1
    assert json.loads(delivery.body)["id"] == delivery.headers["webhook-id"]
    assert [d["status"] for d in shop.deliveries(endpoint)] == ["delivered"]


def test_every_status_change_reaches_every_endpoint_at_least_once_signed_and_in_sequence(
    shop: Shop,
    notify_ctx: Context,
    simulator: Simulator,
    sweeper: Sweeper,
    receiver: Receiver,
    second_receiver: Receiver,
    clock: FakeClock,
) -> None:
    receiver.script = first_attempt_fails(receiver)  # every event needs a retry here
    flaky = shop.endpoint(receiver.url)
    steady = shop.endpoint(second_receiver.url)
    other = Shop(notify_ctx, simulator, "globex")
    with run_receiver() as elsewhere:
        other.endpoint(elsewhere.url)
        stories = {"a": ["failed", "succeeded"], "b": ["succeeded"], "c": ["canceled"]}
        for reference, statuses in stories.items():
            _, gid = shop.payment(reference)
            for status in statuses:
                shop.report(gid, status)
                clock.advance(1)

        deliver_all(sweeper, notify_ctx, clock)

        assert elsewhere.received == []  # another merchant's endpoint hears nothing
    recorded = events(notify_ctx)
    # a: failed, then a late success (succeeded + needs_review); b and c: one each.
    assert len(recorded) == 5
    for endpoint, got in ((flaky, receiver), (steady, second_receiver)):
        assert {r.webhook_id for r in got.received} == {e.id for e in recorded}
        by_id: dict[str, list[bytes]] = defaultdict(list)
        for request in got.received:
            payload = verified(request, endpoint.secret)
            assert payload["id"] == request.webhook_id
            by_id[request.webhook_id].append(request.body)
        for bodies in by_id.values():
            assert len(set(bodies)) == 1  # an attempt again is the same message
    assert all(len(bodies) == 2 for bodies in _bodies_by_id(receiver).values())
    sequences: dict[str, list[int]] = defaultdict(list)
    for event in recorded:
        sequences[event.payment_id].append(event.sequence)
    for numbers in sequences.values():
        assert numbers == list(range(1, len(numbers) + 1))  # strictly increasing, no gaps
    received_sequences = {
        (p["data"]["id"], p["sequence"], p["type"])
        for p in (verified(r, steady.secret) for r in second_receiver.received)
    }
    assert received_sequences == {(e.payment_id, e.sequence, e.type) for e in recorded}
    assert {d["status"] for d in shop.deliveries(flaky)} == {"delivered"}


def _bodies_by_id(receiver: Receiver) -> dict[str, list[bytes]]:
    found: dict[str, list[bytes]] = defaultdict(list)
    for request in receiver.received:
        found[request.webhook_id].append(request.body)
    return found


@pytest.mark.parametrize(
    ("events_wanted", "expected"),
    [
        (["payment.succeeded"], ["payment.succeeded"]),
        # A late success is two events; an endpoint for reviews hears only the second.
        (["payment.needs_review"], ["payment.needs_review"]),
        (["payment.failed", "payment.needs_review"], ["payment.failed", "payment.needs_review"]),
        (None, ["payment.failed", "payment.succeeded", "payment.needs_review"]),
    ],
)
def test_an_endpoint_gets_only_the_event_types_it_asked_for(
    shop: Shop,
    notify_ctx: Context,
    sweeper: Sweeper,
    receiver: Receiver,
    clock: FakeClock,
    events_wanted: list[str] | None,
    expected: list[str],
) -> None:
    endpoint = shop.endpoint(receiver.url, events=events_wanted)
    _, gid = shop.payment("late")
    shop.report(gid, "failed")
    clock.advance(1)
    shop.report(gid, "succeeded")

    deliver_all(sweeper, notify_ctx, clock)

    got = sorted(
        (verified(r, endpoint.secret) for r in receiver.received), key=lambda p: p["sequence"]
    )
    assert [p["type"] for p in got] == expected


@pytest.mark.parametrize(
    ("status", "retry_after"),
    [
        (429, "120"),
        (503, "120"),
        # The HTTP-date form: two minutes from the service's clock.
        (503, "date+120"),
    ],
)
def test_retry_after_is_honoured_before_the_next_attempt(
    shop: Shop,
    notify_ctx: Context,
    sweeper: Sweeper,
    receiver: Receiver,
    clock: FakeClock,
    status: int,
    retry_after: str,
) -> None:
    start = clock.now
    if retry_after.startswith("date+"):
        at = start + timedelta(seconds=int(retry_after.removeprefix("date+")))
        retry_after = at.strftime("%a, %d %b %Y %H:%M:%S GMT")
    answers = iter([(status, {"Retry-After": retry_after})])
    receiver.script = lambda _: next(answers, (200, {}))
    endpoint = shop.endpoint(receiver.url)
    _, gid = shop.payment("ra")
    shop.report(gid, "succeeded")

    sweeper.sweep_once(clock.now)
    [row] = pending(notify_ctx)
    assert row.next_attempt_at is not None
    assert row.next_attempt_at >= start + timedelta(seconds=120)
    clock.advance(119)
    sweeper.sweep_once(clock.now)
    assert len(receiver.received) == 1  # nothing before the time it asked for
    deliver_all(sweeper, notify_ctx, clock)

    first, second = receiver.received
    assert first.webhook_id == second.webhook_id
    [listed] = shop.deliveries(endpoint)
    assert listed["status"] == "delivered"
    assert listed["attempts"] == 2


def test_a_410_disables_the_endpoint_and_nothing_more_is_sent_to_it(
    shop: Shop,
    notify_ctx: Context,
    sweeper: Sweeper,
    receiver: Receiver,
    second_receiver: Receiver,
    clock: FakeClock,
) -> None:
    receiver.status = 410
    gone = shop.endpoint(receiver.url)
    alive = shop.endpoint(second_receiver.url)
    _, first = shop.payment("g1")
    shop.report(first, "succeeded")

    deliver_all(sweeper, notify_ctx, clock)
    _, second = shop.payment("g2")
    shop.report(second, "failed")
    deliver_all(sweeper, notify_ctx, clock)

    assert len(receiver.received) == 1
    assert len(second_receiver.received) == 2
    resource = shop.get(f"/v1/webhook_endpoints/{gone.id}")
    assert resource["status"] == "disabled"
    assert "410" in resource["disabled_reason"]
    [listed] = shop.deliveries(gone)
    assert listed["status"] == "failed"
    assert listed["last_response_status"] == 410
    assert {d["status"] for d in shop.deliveries(alive)} == {"delivered"}


def test_a_redirect_is_a_failed_attempt_and_is_not_followed(
    shop: Shop,
    notify_ctx: Context,
    sweeper: Sweeper,
    receiver: Receiver,
    second_receiver: Receiver,
    clock: FakeClock,
) -> None:
    receiver.status = 307  # keeps the method and body if a client did follow it
    receiver.headers = {"Location": second_receiver.url + "/stolen"}
    endpoint = shop.endpoint(receiver.url)
    _, gid = shop.payment("r1")
    shop.report(gid, "succeeded")

    sweeper.sweep_once(clock.now)
    clock.advance(3600)
    sweeper.sweep_once(clock.now)

    assert len(receiver.received) == 2
    assert second_receiver.received == []
    [listed] = shop.deliveries(endpoint)
    assert listed["status"] == "pending"
    assert listed["last_response_status"] == 307
    assert "not followed" in listed["last_error"]


def test_a_rotated_secret_signs_every_delivery_with_both_secrets_for_a_day(
    shop: Shop,
    notify_ctx: Context,
    sweeper: Sweeper,
    receiver: Receiver,
    clock: FakeClock,
) -> None:
    old = shop.endpoint(receiver.url)
    rotated = shop.client.post(
        f"/v1/webhook_endpoints/{old.id}/rotate_secret", headers=shop.merchant.headers
    )
    assert rotated.status_code == 200, rotated.json
    new = rotated.json["secret"]
    assert new != old.secret
    _, gid = shop.payment("rot")
    shop.report(gid, "failed")
    deliver_all(sweeper, notify_ctx, clock)

    [during] = receiver.received
    entries = during.headers["webhook-signature"].split(" ")
    assert [entry.split(",")[0] for entry in entries] == ["v1", "v1"]
    assert verified(during, old.secret) == verified(during, new)

    clock.advance(24 * 3600 + 1)
    shop.report(gid, "succeeded")
    deliver_all(sweeper, notify_ctx, clock)
    later = receiver.received[1:]  # a late success: payment.succeeded and needs_review
    assert len(later) == 2
    for after in later:
        assert len(after.headers["webhook-signature"].split(" ")) == 1
        assert verified(after, new)["data"]["status"] == "succeeded"
        with pytest.raises(WebhookVerificationError):
            verified(after, old.secret)


def breaker_probes_within(seconds: float, settings: Settings) -> int:
    """Most probes an open breaker lets out in `seconds`: one per cool-down, each doubling."""
    cooldowns = [settings.breaker_cooldown_s]
    while sum(cooldowns) < seconds:
        cooldowns.append(min(settings.breaker_max_cooldown_s, cooldowns[-1] * 2))
    return sum(1 for total in accumulate(cooldowns) if total <= seconds) + 1


def test_an_endpoint_down_for_an_hour_gets_everything_when_it_returns(
    shop: Shop,
    notify_ctx: Context,
    sweeper: Sweeper,
    receiver: Receiver,
    clock: FakeClock,
) -> None:
    receiver.status = 503
    endpoint = shop.endpoint(receiver.url)
    start = clock.now
    for n in range(12):
        _, gid = shop.payment(f"down{n}")
        shop.report(gid, "succeeded" if n % 2 else "failed")
        clock.advance(60)  # events keep coming during the outage

    hour = start + timedelta(hours=1)
    while True:
        due = [d.next_attempt_at for d in pending(notify_ctx) if d.next_attempt_at is not None]
        at = max(clock.now, min(due))
        if at >= hour:
            break
        clock.now = at
        sweeper.sweep_once(clock.now)
    during_outage = len(receiver.received)
    receiver.status = 200
    deliver_all(sweeper, notify_ctx, clock)

    settings = notify_ctx.settings
    bound = (
        settings.breaker_threshold
        + settings.notify.max_in_flight_per_endpoint  # out when the breaker opened
        + breaker_probes_within(3600, settings)
    )
    print(f"attempts at the endpoint during the hour down: {during_outage} (bound {bound})")
    assert during_outage <= bound
    assert {r.webhook_id for r in receiver.received} == {e.id for e in events(notify_ctx)}
    assert {d["status"] for d in shop.deliveries(endpoint)} == {"delivered"}
    assert shop.get(f"/v1/webhook_endpoints/{endpoint.id}")["status"] == "enabled"


def test_a_delivery_held_by_an_open_breaker_at_its_deadline_fails_instead_of_spinning(
    db_url: str, simulator: Simulator, clock: FakeClock, receiver: Receiver
) -> None:
    settings = make_settings(
        db_url, simulator.url, notify_allow_private=1, notify_give_up_after_s=600
    )
    ctx = bootstrap(settings, clock=clock, rand=random.Random(5).random)
    shop = Shop(ctx, simulator)
    sweeper = Sweeper(ctx)
    try:
        receiver.status = 503
        endpoint = shop.endpoint(receiver.url)
        for n in range(8):
            _, gid = shop.payment(f"dl{n}")
            shop.report(gid, "succeeded")
        sweeps = deliver_all(sweeper, ctx, clock, rounds=200)
        assert {d["status"] for d in shop.deliveries(endpoint)} == {"failed"}
        assert sweeps < 100
    finally:
        sweeper.close()
        ctx.close()


def test_a_slow_endpoint_does_not_delay_a_healthy_endpoints_deliveries(
    db_url: str, simulator: Simulator, receiver: Receiver, second_receiver: Receiver
) -> None:
    settings = make_settings(
        db_url,
        simulator.url,
        notify_allow_private=1,
        notify_timeout_s=4,
        notify_concurrency=4,
        notify_max_in_flight_per_endpoint=2,
    )
    ctx = bootstrap(settings)  # the real clock: the slow calls really hang
    shop = Shop(ctx, simulator)
    slow, healthy = receiver, second_receiver
    slow.hold = threading.Event()  # answers only after the sender's timeout
    slow_endpoint = shop.endpoint(slow.url)
    healthy_endpoint = shop.endpoint(healthy.url)
    for n in range(6):
        _, gid = shop.payment(f"s{n}")
        shop.report(gid, "succeeded")
    sweeper = Sweeper(ctx)
    stop = threading.Event()

    def job() -> None:  # what the scheduler does: tick, and never wait for the calls
        while not stop.is_set():
            sweeper.tick()
            time.sleep(0.02)

    ticking = threading.Thread(target=job)
    ticking.start()
    try:

        def healthy_done() -> bool:
            return {d["status"] for d in shop.deliveries(healthy_endpoint)} == {"delivered"}

        eventually(healthy_done, "every delivery to the healthy endpoint")
        # Everything reached the healthy endpoint while the slow one still had requests
        # unanswered and not one result of its own stored.
        assert slow.hanging() > 0
        assert all(d["attempts"] == 0 for d in shop.deliveries(slow_endpoint))
        assert len(healthy.received) == 6

        def timed_out() -> bool:
            return any(d["last_error"] == "timeout" for d in shop.deliveries(slow_endpoint))

        eventually(timed_out, "the slow endpoint's attempts timing out")
    finally:
        stop.set()
        ticking.join()
        slow.hold.set()
        sweeper.close()
        ctx.close()


def test_a_sweep_killed_mid_delivery_loses_nothing(
    db_url: str, simulator: Simulator, receiver: Receiver, tmp_path: Path
) -> None:
    clock = FakeClock(datetime.now(UTC) - timedelta(seconds=60))
    settings = make_settings(db_url, simulator.url, notify_allow_private=1, lease_s=40)
    ctx = bootstrap(settings, clock=clock)
    shop = Shop(ctx, simulator)
    try:
        endpoint = shop.endpoint(receiver.url)
        for n in range(4):
            _, gid = shop.payment(f"k{n}")
            shop.report(gid, "succeeded")
        receiver.hold = threading.Event()  # the killed process's attempts never get answers
        env = {
            **os.environ,
            "RECONCILER_DATABASE_URL": db_url,
            "RECONCILER_SIMULATOR_URL": simulator.url,
            "RECONCILER_SIMULATOR_WEBHOOK_SECRET": SIM_SECRET,
            "RECONCILER_SECRETS_KEY": SECRETS_KEY,
            "RECONCILER_LEASE_S": "40",
            "RECONCILER_NOTIFY_ALLOW_PRIVATE": "1",
            "RECONCILER_NOTIFY_TIMEOUT_S": "15",
        }
        with (tmp_path / "sweep.stderr").open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "reconciler.entrypoints.cli", "sweep", "--once"],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        try:

            def out() -> bool:
                if proc.poll() is not None:
                    log = (tmp_path / "sweep.stderr").read_text()[-3000:]
                    raise AssertionError(f"the sweep exited with {proc.returncode}:\n{log}")
                return receiver.hanging() == 4

            eventually(out, "the sweep's four attempts going out", timeout=90)
            leased = [d for d in deliveries(ctx) if d.lease_owner]
            assert len(leased) == 4
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        receiver.hold.set()
        receiver.hold = None
        sweeper = Sweeper(ctx)
        try:
            clock.now = datetime.now(UTC)
            assert sweeper.sweep_once(clock.now).deliveries == {}  # the dead one's leases hold
            clock.advance(41)
            assert sweeper.sweep_once(clock.now).deliveries == {"2xx": 4}
        finally:
            sweeper.close()
        assert {d["status"] for d in shop.deliveries(endpoint)} == {"delivered"}
        assert {d["attempts"] for d in shop.deliveries(endpoint)} == {1}  # cut-off: not stored
        assert Counter(receiver.ids()) == Counter({e.id: 2 for e in events(ctx)})
    finally:
        ctx.close()


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_several_sweepers_never_attempt_one_delivery_at_once(
    db_url: str, simulator: Simulator, receiver: Receiver, second_receiver: Receiver
) -> None:
    settings = make_settings(
        db_url,
        simulator.url,
        notify_allow_private=1,
        notify_base_delay_s=0.05,
        notify_timeout_s=2,
        notify_concurrency=6,
        lease_s=8,
        breaker_threshold=1000,  # every first attempt fails here on purpose
    )
    ctx = bootstrap(settings)
    shop = Shop(ctx, simulator)
    for got in (receiver, second_receiver):
        got.delay_s = 0.02  # long enough for a second attempt to overlap, if one were made
        got.script = first_attempt_fails(got)
    shop.endpoint(receiver.url)
    shop.endpoint(second_receiver.url)
    for n in range(15):
        _, gid = shop.payment(f"m{n}")
        shop.report(gid, "succeeded")
    sweepers = [Sweeper(ctx) for _ in range(3)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def run(sweeper: Sweeper) -> None:
        try:
            while not stop.is_set():
                sweeper.sweep_once()
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in sweepers]
    for thread in threads:
        thread.start()
    try:
        eventually(lambda: not pending(ctx), "every delivery delivered", timeout=60)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        for sweeper in sweepers:
            sweeper.close()
    try:
        assert errors == []
        for got in (receiver, second_receiver):
            assert len(set(got.ids())) == 15
            assert max(got.most_at_once.values()) == 1
            assert set(Counter(got.ids()).values()) == {2}  # one 503, then one 200: no more
        assert {d.lease_owner for d in deliveries(ctx)} == {None}
    finally:
        ctx.close()


def test_an_attempt_that_could_outlive_its_lease_is_not_made(
    db_url: str, simulator: Simulator, receiver: Receiver, clock: FakeClock
) -> None:
    # Gateway calls fit in 5 s here, a delivery attempt in its 20 s timeout and a margin.
    settings = make_settings(
        db_url, simulator.url, notify_allow_private=1, notify_timeout_s=20, lease_s=60
    )
    ctx = bootstrap(settings, clock=clock)
    shop = Shop(ctx, simulator)
    endpoint = shop.endpoint(receiver.url)
    _, gid = shop.payment("late-in-queue")
    shop.report(gid, "succeeded")
    claimed_at = clock.now
    ticks = iter([claimed_at])  # the claim sees this time; every later read is 40 s on
    ctx.clock = lambda: next(ticks, claimed_at + timedelta(seconds=40))
    sweeper = Sweeper(ctx)
    try:
        report = sweeper.sweep_once()
        assert report.deliveries == {"lease_too_short": 1}
        assert receiver.received == []
        [listed] = shop.deliveries(endpoint)
        assert listed["attempts"] == 0
    finally:
        sweeper.close()
        ctx.close()
