"""Webhook reliability: counted on the real webhook and poll paths, read back, and `auto`."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import timedelta
from statistics import NormalDist
from typing import Any

import pytest
from flask.testing import FlaskClient
from support.app import MerchantAuth, make_settings, register_payment
from support.clock import FakeClock
from support.simulator import Simulator
from support.webhooks import deliver, event

from reconciler.adapters.models import Payment
from reconciler.bootstrap import Context, bootstrap
from reconciler.entrypoints.app import create_app
from reconciler.entrypoints.reliability_job import ReliabilityJob
from reconciler.services import reliability
from reconciler.services.merchants import create_merchant
from reconciler.services.sweep import Sweeper

TOKEN = "admin-test-token-long-enough-for-32-chars"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
SIM = "/admin/gateway_accounts/default-simulator/reliability"
# The known distribution: webhook delays log-normal, median 3 s, sigma 0.8.
MEDIAN_S, SIGMA = 3.0, 0.8


def true_quantile(q: float) -> float:
    return MEDIAN_S * math.exp(SIGMA * NormalDist().inv_cdf(q))


def known_delays(n: int) -> list[float]:
    """n delays spread exactly as the distribution (its quantiles at (i + 0.5) / n), shuffled."""
    delays = [true_quantile((i + 0.5) / n) for i in range(n)]
    random.Random(3).shuffle(delays)
    return delays


@pytest.fixture
def auto(db_url: str, simulator: Simulator, clock: FakeClock) -> Iterator[Context]:
    settings = make_settings(
        db_url,
        simulator.url,
        admin_token="admin-test-token-long-enough-for-32-chars",
        poll_first_delay_s="auto",
    )
    context = bootstrap(settings, clock=clock, rand=random.Random(1).random)
    yield context
    context.close()


@pytest.fixture
def admin(auto: Context) -> FlaskClient:
    return create_app(ctx=auto).test_client()


@pytest.fixture
def shop(auto: Context) -> MerchantAuth:
    record, key = create_merchant(auto, "acme")
    return MerchantAuth(record.id, key)


def send_terminal(client: FlaskClient, clock: FakeClock, delays: list[float], tag: str) -> None:
    """Deliver one `succeeded` webhook per delay, for payments nobody registered (yet)."""
    for n, delay in enumerate(delays):
        occurred = clock.now - timedelta(seconds=delay)
        body = event(f"sim_{tag}_{n}", "succeeded", occurred)
        assert deliver(client, clock, f"msg_{tag}_{n}", body).status_code == 200


def report(client: FlaskClient, window: str = "24h") -> dict[str, Any]:
    response = client.get(f"{SIM}?window={window}", headers=ADMIN)
    assert response.status_code == 200, response.json
    answer: dict[str, Any] = response.json
    return answer


def first_entry(client: FlaskClient, merchant: MerchantAuth, payment_id: str) -> dict[str, Any]:
    timeline = client.get(f"/v1/payments/{payment_id}/events", headers=merchant.headers)
    entry: dict[str, Any] = timeline.json["data"][0]
    return entry


def test_reported_delay_quantiles_and_auto_match_a_known_distribution(
    auto: Context, admin: FlaskClient, clock: FakeClock
) -> None:
    send_terminal(admin, clock, known_delays(400), "known")
    reliability.flush(auto)
    answer = report(admin)
    delays = answer["event_types"]["payment.succeeded"]
    assert delays["received"] == 400
    assert delays["delay_s"]["p50"] == pytest.approx(true_quantile(0.5), rel=0.25)
    assert delays["delay_s"]["p95"] == pytest.approx(true_quantile(0.95), rel=0.30)
    assert delays["delay_s"]["p99"] == pytest.approx(true_quantile(0.99), rel=0.30)
    reliability.refresh(auto)
    first = report(admin)["first_delay_s"]
    assert first["source"] == "observed"
    assert first["value"] == pytest.approx(true_quantile(0.95), rel=0.30)


def test_auto_waits_the_fallback_until_fifty_delays_and_the_timeline_says_why(
    auto: Context, admin: FlaskClient, shop: MerchantAuth, clock: FakeClock
) -> None:
    send_terminal(admin, clock, [20.0] * 49, "few")
    reliability.flush(auto)
    reliability.refresh(auto)
    assert report(admin)["first_delay_s"] == {"value": 30.0, "source": "fallback"}
    early = register_payment(admin, shop, "sim_early")
    note = first_entry(admin, shop, early)
    assert (note["outcome"], note["source"]) == ("registered", "api")
    assert note["detail"] == {"first_delay_s": 30.0, "first_delay_source": "fallback"}

    send_terminal(admin, clock, [20.0], "fiftieth")
    reliability.flush(auto)
    assert report(admin)["first_delay_s"]["source"] == "fallback"  # not refreshed yet
    reliability.refresh(auto)
    first = report(admin)["first_delay_s"]
    assert first["source"] == "observed"
    assert first["value"] == pytest.approx(20.0, rel=0.15)
    later = register_payment(admin, shop, "sim_later")
    assert first_entry(admin, shop, later)["detail"] == {
        "first_delay_s": first["value"],
        "first_delay_source": "observed",
    }
    with auto.read() as session:
        row = session.get_one(Payment, later)
    assert row.next_poll_at is not None
    waits = (row.next_poll_at - clock.now).total_seconds()
    assert waits == pytest.approx(first["value"], abs=1e-3)


def test_auto_uses_the_minimum_while_most_terminal_statuses_are_missed(
    auto: Context, admin: FlaskClient, shop: MerchantAuth, simulator: Simulator, clock: FakeClock
) -> None:
    send_terminal(admin, clock, [40.0] * 60, "slow")  # enough delays for the quantile
    gateway_ids = [
        simulator.create(amount=1000, currency="EUR", reference=f"m{n}")["id"] for n in range(55)
    ]
    ids = {gid: register_payment(admin, shop, gid) for gid in gateway_ids}
    clock.advance(30)
    sweeper = Sweeper(auto)
    try:
        assert sweeper.sweep_once(clock.now).polled == 55
    finally:
        sweeper.close()
    late_gid = gateway_ids[0]
    with auto.read() as session:
        status = session.get_one(Payment, ids[late_gid]).status
    clock.advance(5)
    body = event(late_gid, status, clock.now - timedelta(seconds=12))
    assert deliver(admin, clock, "msg_late", body).status_code == 200
    reliability.flush(auto)
    counts = report(admin)["event_types"]
    assert sum(t["missed"] for t in counts.values()) == 54  # the late one came after all
    assert counts[f"payment.{status}"]["late"] == 1
    assert counts[f"payment.{status}"]["late_delay_s"]["p50"] == pytest.approx(12.0, rel=0.15)
    assert counts["payment.succeeded"]["missed_rate"] > 0.5
    reliability.refresh(auto)
    assert report(admin)["first_delay_s"] == {"value": 5.0, "source": "missed_majority"}


def test_duplicates_bad_signatures_and_out_of_order_webhooks_are_counted(
    auto: Context, admin: FlaskClient, shop: MerchantAuth, clock: FakeClock
) -> None:
    register_payment(admin, shop, "sim_dup")
    settled = event("sim_dup", "succeeded", clock.now)
    assert deliver(admin, clock, "msg_a", settled).status_code == 200
    assert deliver(admin, clock, "msg_a", settled).status_code == 200  # the same event again
    stale = event("sim_dup", "processing", clock.now - timedelta(seconds=5))
    assert deliver(admin, clock, "msg_b", stale).status_code == 200
    wrong = deliver(admin, clock, "msg_c", settled, secret="whsec_" + "d3Jvbmc=" * 4)
    assert wrong.status_code == 401
    reliability.flush(auto)
    counts = report(admin)["event_types"]
    assert counts["payment.succeeded"]["received"] == 1
    assert counts["payment.succeeded"]["duplicates"] == 1
    assert counts["payment.succeeded"]["missed"] == 0
    assert counts["payment.succeeded"]["missed_rate"] == 0.0
    assert counts["payment.processing"]["out_of_order"] == 1
    assert counts["unverified"]["bad_signatures"] == 1


def test_the_seven_day_window_keeps_what_the_day_forgot(
    auto: Context, admin: FlaskClient, clock: FakeClock
) -> None:
    send_terminal(admin, clock, [2.0] * 3, "old")
    reliability.flush(auto)
    clock.advance(2 * 86_400)
    assert report(admin, "24h")["event_types"] == {}
    assert report(admin, "7d")["event_types"]["payment.succeeded"]["received"] == 3


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/admin/gateway_accounts/default-stripe/reliability", 404),  # stripe is not configured
        ("/admin/gateway_accounts/gwa_unknown/reliability", 404),
        ("/admin/gateway_accounts/default-simulator/reliability?window=1y", 400),
        ("/admin/gateway_accounts/default-simulator/reliability?extra=1", 400),
    ],
)
def test_unknown_accounts_and_bad_windows_are_problems(
    admin: FlaskClient, path: str, status: int
) -> None:
    response = admin.get(path, headers=ADMIN)
    assert response.status_code == status
    assert response.content_type == "application/problem+json"


def test_metrics_show_the_delay_histogram_and_missed_and_late_per_gateway(
    auto: Context, admin: FlaskClient, clock: FakeClock
) -> None:
    send_terminal(admin, clock, [1.5, 7.0, 45.0], "metrics")
    text = admin.get("/metrics").get_data(as_text=True)
    assert 'reconciler_webhook_delay_seconds_bucket{gateway="simulator",le="2.0"} 1.0' in text
    assert 'reconciler_webhook_delay_seconds_count{gateway="simulator"} 3.0' in text
    assert 'reconciler_webhooks_missed_total{gateway="simulator"} 0.0' in text
    assert (
        'reconciler_webhook_terminal_statuses_total{first="poll",gateway="simulator"} 0.0' in text
    )
    assert 'reconciler_webhooks_late_total{gateway="simulator"} 0.0' in text


def test_the_operators_page_shows_a_panel_per_account_with_its_chart(
    auto: Context, admin: FlaskClient, clock: FakeClock
) -> None:
    for hour in range(3):
        send_terminal(admin, clock, known_delays(60), f"page{hour}")
        clock.advance(3600)
    reliability.flush(auto)
    reliability.refresh(auto)
    assert admin.post("/admin/ui/sign-in", data={"token": TOKEN}).status_code == 303
    page = admin.get("/admin/ui/").get_data(as_text=True)
    assert 'data-testid="reliability-default-simulator"' in page
    assert "auto: the observed quantile of terminal webhook delays" in page
    assert page.count('class="line-p95"') == 1  # three hours in a row: one unbroken line
    assert 'data-testid="missed-default-simulator">0 (' in page


def test_the_job_flushes_what_was_counted_when_it_stops(
    auto: Context, admin: FlaskClient, clock: FakeClock
) -> None:
    job = ReliabilityJob(auto)
    job.start()
    send_terminal(admin, clock, [4.0, 6.0], "job")
    job.stop()
    assert report(admin)["event_types"]["payment.succeeded"]["received"] == 2
