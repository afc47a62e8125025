"""The operator's page below the browser: its queries on SQLite and PostgreSQL, its session."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from flask.testing import FlaskClient
from support.app import MerchantAuth, make_settings, register_payment
from support.clock import FakeClock
from support.receiver import run_receiver
from support.shop import Endpoint, Shop
from support.simulator import Simulator

from reconciler.adapters.models import NotificationDelivery, Payment, PaymentEvent
from reconciler.bootstrap import Context, bootstrap
from reconciler.domain.breaker import BreakerState
from reconciler.entrypoints import admin_ui, admin_ui_format
from reconciler.entrypoints.admin_ui import COOKIE, SESSION_MAX_AGE_S
from reconciler.entrypoints.app import create_app
from reconciler.services import notify_admin, notify_stats, operators
from reconciler.services.errors import Conflict, NotFound, ValidationFailed
from reconciler.services.sweep import Sweeper

TOKEN = "ui-integration-token-long-enough-32"  # test-only


@pytest.fixture
def ui(db_url: str, simulator: Simulator, clock: FakeClock) -> Iterator[FlaskClient]:
    ctx = bootstrap(
        make_settings(db_url, simulator.url, admin_token=TOKEN, notify_allow_private=1),
        clock=clock,
        rand=random.Random(3).random,
    )
    yield create_app(ctx=ctx).test_client()
    ctx.close()


def signed_in(ui: FlaskClient) -> FlaskClient:
    response = ui.post("/admin/ui/sign-in", data={"token": TOKEN})
    assert response.status_code == 303
    return ui


def set_fields(ctx: Context, payment_id: str, **fields: object) -> None:
    with ctx.sessions.begin() as session:
        payment = session.get(Payment, payment_id)
        assert payment is not None
        for name, value in fields.items():
            setattr(payment, name, value)


def add_event(ctx: Context, payment_id: str, source: str, at: datetime) -> None:
    with ctx.sessions.begin() as session:
        session.add(
            PaymentEvent(
                payment_id=payment_id,
                recorded_at=at,
                source=source,
                outcome="unchanged",
                from_status="pending",
                to_status="pending",
                detail={},
            )
        )


def test_the_page_is_off_without_an_admin_token(client: FlaskClient) -> None:
    for path in ("/admin/ui/", "/admin/ui/sign-in"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.content_type == "application/problem+json"


def test_a_session_ends_after_its_max_age(ui: FlaskClient, clock: FakeClock) -> None:
    signed_in(ui)
    assert ui.get("/admin/ui/").status_code == 200
    clock.advance(SESSION_MAX_AGE_S + 1)
    expired = ui.get("/admin/ui/")
    assert expired.status_code == 303
    assert expired.headers["Location"].startswith("/admin/ui/sign-in")


def test_a_tampered_session_cookie_is_refused(ui: FlaskClient) -> None:
    signed_in(ui)
    cookie = ui.get_cookie(COOKIE, path="/admin/ui")
    assert cookie is not None
    ui.set_cookie(COOKIE, cookie.value[:-2] + "xx", path="/admin/ui")
    assert ui.get("/admin/ui/review").status_code == 303


def test_a_session_signed_with_another_token_is_refused(
    ui: FlaskClient, db_url: str, simulator: Simulator, clock: FakeClock
) -> None:
    signed_in(ui)
    cookie = ui.get_cookie(COOKIE, path="/admin/ui")
    assert cookie is not None
    rotated = bootstrap(
        make_settings(db_url, simulator.url, admin_token="rotated-token-that-is-long-enough-32"),
        clock=clock,
    )
    try:
        other = create_app(ctx=rotated).test_client()
        other.set_cookie(COOKIE, cookie.value, path="/admin/ui")
        assert other.get("/admin/ui/").status_code == 303
    finally:
        rotated.close()


@pytest.mark.parametrize(
    ("target", "lands_on"),
    [
        ("/admin/ui/review?state=gave_up", "/admin/ui/review?state=gave_up"),
        ("https://elsewhere.example/admin/ui/", "/admin/ui/"),
        ("//elsewhere.example/admin/ui/", "/admin/ui/"),
        ("/admin/ui//elsewhere.example", "/admin/ui/"),  # a path that browsers read as a host
        ("/v1/payments", "/admin/ui/"),  # only the operator's own pages
    ],
)
def test_sign_in_follows_next_only_to_the_operators_own_pages(
    ui: FlaskClient, target: str, lands_on: str
) -> None:
    response = ui.post("/admin/ui/sign-in", data={"token": TOKEN, "next": target})
    assert response.status_code == 303
    assert response.headers["Location"] == lands_on


def test_a_shadow_registration_is_named_on_the_operators_page(
    ui: FlaskClient, merchant: MerchantAuth, other_merchant: MerchantAuth
) -> None:
    """The merchant is told what an unknown id is told; the operator is told why."""
    mine = register_payment(ui, merchant, "sim_pay_shared")
    theirs = register_payment(ui, other_merchant, "sim_pay_shared")
    signed_in(ui)
    pages = {
        pid: ui.get(f"/admin/ui/payments/{pid}").get_data(as_text=True) for pid in (mine, theirs)
    }
    assert 'data-testid="shadow"' not in pages[mine]
    assert '<dd data-testid="gateway-account"><code>default</code>' in pages[mine]
    assert "another merchant tracks this gateway payment" in pages[theirs]


def test_an_action_with_a_bad_note_shows_the_reason_as_a_page(
    ui: FlaskClient, merchant: MerchantAuth
) -> None:
    pid = register_payment(ui, merchant, "sim_pay_ui_note")
    signed_in(ui)
    page = ui.get(f"/admin/ui/payments/{pid}").get_data(as_text=True)
    csrf = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    response = ui.post(
        f"/admin/ui/payments/{pid}/report",
        data={"csrf_token": csrf, "status": "succeeded", "note": "  "},
    )
    assert response.status_code == 400
    assert response.content_type.startswith("text/html")
    assert "a note (1 to 1000 characters) is required" in response.get_data(as_text=True)


def test_the_overview_counts_the_hour_by_minute_and_source(
    ui: FlaskClient, merchant: MerchantAuth, clock: FakeClock
) -> None:
    ctx: Context = ui.application.extensions["reconciler"]
    a = register_payment(ui, merchant, "sim_pay_ov_a")
    b = register_payment(ui, merchant, "sim_pay_ov_b")
    set_fields(ctx, b, status="succeeded", sync_state="settled", next_poll_at=None)
    now = clock.advance(30)
    minute = now.replace(second=0, microsecond=0)
    add_event(ctx, a, "poll", minute + timedelta(seconds=1))
    add_event(ctx, a, "poll", minute + timedelta(seconds=59))
    add_event(ctx, a, "webhook", minute - timedelta(minutes=5))
    add_event(ctx, a, "webhook", minute - timedelta(minutes=60))  # an hour ago: off the chart
    view = operators.overview(ctx, {})
    assert view.by_status == {"pending": 1, "succeeded": 1, "failed": 0, "canceled": 0}
    assert view.by_sync_state["settled"] == 1
    assert sum(view.by_sync_state.values()) == 2
    assert len(view.minutes) == operators.CHART_MINUTES
    assert view.minutes[-1].start == minute
    assert (view.minutes[-1].polls, view.minutes[-1].webhooks) == (2, 0)
    assert (view.minutes[-6].polls, view.minutes[-6].webhooks) == (0, 1)
    assert sum(m.polls + m.webhooks for m in view.minutes) == 3
    assert view.oldest_pending_age_s == pytest.approx(30)


def test_the_last_failure_skips_payments_held_back_unpolled(
    ui: FlaskClient, merchant: MerchantAuth, clock: FakeClock
) -> None:
    ctx: Context = ui.application.extensions["reconciler"]
    a = register_payment(ui, merchant, "sim_pay_fail_a")
    b = register_payment(ui, merchant, "sim_pay_fail_b")
    now = clock.now
    set_fields(ctx, a, last_polled_at=now, last_error="HTTP 503 from the gateway")
    set_fields(ctx, b, last_polled_at=now + timedelta(seconds=1), last_error="circuit open")
    (simulator,) = [b for b in operators.overview(ctx, {}).breakers if b.gateway == "simulator"]
    assert (simulator.last_failure_at, simulator.last_failure) == (
        now,
        "HTTP 503 from the gateway",
    )
    assert simulator.state == "unknown"  # no sweeper in this process


def test_needs_a_human_pages_oldest_first_with_the_cursor(
    ui: FlaskClient, merchant: MerchantAuth, clock: FakeClock
) -> None:
    ctx: Context = ui.application.extensions["reconciler"]
    ids = []
    for n, state in enumerate(["needs_review", "settled", "gave_up", "needs_review"]):
        pid = register_payment(ui, merchant, f"sim_pay_human_{n}")
        set_fields(ctx, pid, sync_state=state)
        ids.append(pid)
        clock.advance(1)
    first, cursor = operators.needs_a_human(ctx, None, 2, None)
    assert [p.id for p in first] == [ids[0], ids[2]]
    rest, end = operators.needs_a_human(ctx, None, 2, cursor)
    assert ([p.id for p in rest], end) == ([ids[3]], None)
    only, _ = operators.needs_a_human(ctx, "gave_up", 10, None)
    assert [p.id for p in only] == [ids[2]]
    with pytest.raises(ValidationFailed):
        operators.needs_a_human(ctx, "settled", 10, None)
    with pytest.raises(ValidationFailed):
        operators.needs_a_human(ctx, None, 10, "not-a-cursor")


def test_find_matches_any_of_the_three_ids_across_merchants(
    ui: FlaskClient, merchant: MerchantAuth, other_merchant: MerchantAuth
) -> None:
    ctx: Context = ui.application.extensions["reconciler"]
    mine = register_payment(ui, merchant, "sim_pay_find_1", reference="order-7")
    theirs = register_payment(ui, other_merchant, "sim_pay_find_2", reference="order-7")
    assert [p.id for p in operators.find(ctx, mine)] == [mine]
    assert [p.id for p in operators.find(ctx, " sim_pay_find_2 ")] == [theirs]
    assert {p.id for p in operators.find(ctx, "order-7")} == {mine, theirs}
    assert operators.find(ctx, "order-8") == []
    with pytest.raises(ValidationFailed):
        operators.find(ctx, "   ")
    with pytest.raises(NotFound):
        operators.timeline(ctx, "pay_nobody")
    payment, events = operators.timeline(ctx, mine)
    assert payment.merchant_reference == "order-7"
    assert [e.payment_id for e in events] == [mine] * len(events)


def test_the_review_page_pages_with_the_apis_cursor(
    ui: FlaskClient, merchant: MerchantAuth, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx: Context = ui.application.extensions["reconciler"]
    monkeypatch.setattr(admin_ui, "PAGE_SIZE", 1)
    ids = []
    for n in range(2):
        pid = register_payment(ui, merchant, f"sim_pay_page_{n}")
        set_fields(ctx, pid, sync_state="gave_up")
        ids.append(pid)
        clock.advance(1)
    first = signed_in(ui).get("/admin/ui/review").get_data(as_text=True)
    assert ids[0] in first and ids[1] not in first
    link = first.split('rel="next"', 1)[0].rsplit('href="', 1)[1].split('"', 1)[0]
    second = ui.get(link.replace("&amp;", "&")).get_data(as_text=True)
    assert ids[1] in second and ids[0] not in second
    assert 'rel="next"' not in second


# --- Merchant notifications on the operator's page --------------------------------------------

GIVE_UP_S = 259200  # the default: a delivery fails 3 days after it was made


@dataclass
class Notified:
    """Two merchants' endpoints after one sweep: one healthy, one failing, one gone (410)."""

    ctx: Context
    acme: Shop
    globex: Shop
    good: Endpoint
    bad: Endpoint
    gone: Endpoint
    fresh: Endpoint  # registered after the sweep: never attempted
    payments: list[str]  # acme's two payments, then globex's one
    sweeper: Sweeper


@pytest.fixture
def notified(ui: FlaskClient, simulator: Simulator, clock: FakeClock) -> Iterator[Notified]:
    ctx: Context = ui.application.extensions["reconciler"]
    with run_receiver() as good, run_receiver() as bad, run_receiver() as gone:
        bad.status, gone.status = 500, 410
        acme, globex = Shop(ctx, simulator, "acme"), Shop(ctx, simulator, "globex")
        endpoints = acme.endpoint(good.url), acme.endpoint(bad.url), globex.endpoint(gone.url)
        payments = []
        for shop, reference in ((acme, "a1"), (acme, "a2"), (globex, "g1")):
            pid, gid = shop.payment(reference)
            shop.report(gid, "succeeded")
            payments.append(pid)
        sweeper = Sweeper(ctx)
        try:
            sweeper.sweep_once(clock.now)
            fresh = acme.endpoint(good.url)
            yield Notified(ctx, acme, globex, *endpoints, fresh, payments, sweeper)
        finally:
            sweeper.close()


def fail_for_good(notified: Notified, clock: FakeClock) -> list[str]:
    """Sweep past the deadline: the failing endpoint's deliveries fail; return their ids."""
    clock.advance(GIVE_UP_S + 1)
    notified.sweeper.sweep_once(clock.now)
    failed = [d["id"] for d in notified.acme.deliveries(notified.bad) if d["status"] == "failed"]
    assert len(failed) == 2
    return failed


def delivery_row(ctx: Context, delivery_id: str) -> NotificationDelivery:
    with ctx.read() as session:
        found = session.get(NotificationDelivery, delivery_id)
        assert found is not None
        return found


def test_endpoint_rows_show_success_rate_breaker_and_disabled_reason(
    notified: Notified,
) -> None:
    rows = {r.endpoint.id: r for r in notify_admin.endpoint_rows(notified.ctx, None, None, 100)}
    assert set(rows) == {e.id for e in (notified.good, notified.bad, notified.gone, notified.fresh)}
    good, bad, gone, fresh = (
        rows[e.id] for e in (notified.good, notified.bad, notified.gone, notified.fresh)
    )
    assert (good.merchant, good.attempted, good.delivered, good.success_rate) == ("acme", 2, 2, 1)
    assert (bad.attempted, bad.delivered, bad.success_rate, bad.pending) == (2, 0, 0.0, 2)
    assert bad.endpoint.failing_since is not None
    assert (gone.merchant, gone.endpoint.status, gone.failed) == ("globex", "disabled", 1)
    assert gone.endpoint.disabled_reason is not None and "410" in gone.endpoint.disabled_reason
    assert (fresh.attempted, fresh.success_rate) == (0, None)
    # No sweep in this process: no breaker to read.
    assert {r.breaker for r in rows.values()} == {"unknown"}


@pytest.mark.parametrize(
    ("held", "shown"),
    [
        (None, "closed"),  # a sweeping process that has not called the endpoint yet
        (BreakerState.OPEN, "open"),
        (BreakerState.HALF_OPEN, "half_open"),
    ],
)
def test_endpoint_rows_show_the_sweepers_breaker_by_endpoint(
    notified: Notified, held: BreakerState | None, shown: str
) -> None:
    breakers = {notified.bad.id: held} if held is not None else {}
    rows = {r.endpoint.id: r for r in notify_admin.endpoint_rows(notified.ctx, breakers, None, 100)}
    assert rows[notified.bad.id].breaker == shown
    assert rows[notified.good.id].breaker == "closed"
    from_the_engine = notify_stats.endpoint_breakers(notified.sweeper)
    assert from_the_engine[notified.good.id] is BreakerState.CLOSED  # it was called


@pytest.mark.parametrize(("status", "which"), [("failing", {"bad"}), ("disabled", {"gone"})])
def test_endpoint_rows_filter_like_the_admin_api(
    notified: Notified, status: str, which: set[str]
) -> None:
    rows = notify_admin.endpoint_rows(notified.ctx, None, status, 100)
    assert {r.endpoint.id for r in rows} == {getattr(notified, w).id for w in which}
    with pytest.raises(ValidationFailed):
        notify_admin.endpoint_rows(notified.ctx, None, "broken", 100)


def test_the_endpoint_listing_pages_through_every_merchant_by_cursor(notified: Notified) -> None:
    seen, cursor, pages = [], None, 0
    while True:
        rows, cursor = notify_admin.endpoint_page(notified.ctx, None, None, 2, cursor)
        seen += [r.endpoint.id for r in rows]
        pages += 1
        if cursor is None:
            break
    every = [notified.good, notified.bad, notified.gone, notified.fresh]
    assert sorted(seen) == sorted(e.id for e in every) and pages == 2  # each once
    with pytest.raises(ValidationFailed):
        notify_admin.endpoint_page(notified.ctx, None, None, 2, "not-a-cursor")


def test_the_endpoints_page_shows_the_longest_failing_with_their_last_error(
    ui: FlaskClient, notified: Notified
) -> None:
    page = signed_in(ui).get("/admin/ui/endpoints").get_data(as_text=True)
    assert f'data-testid="failing-{notified.bad.id}"' in page
    assert "HTTP 500" in page
    first = signed_in(ui).get("/admin/ui/endpoints?endpoints_cursor=%%%")
    assert first.status_code == 400


def test_the_overview_counts_the_notification_backlog_and_endpoints(
    notified: Notified, clock: FakeClock
) -> None:
    made = clock.now
    first = operators.overview(notified.ctx, {}).notifications
    # The two failed attempts wait for their retry; nothing is due yet.
    assert (first.backlog, first.deliveries["pending"]) == (0, 2)
    assert (first.endpoints["failing"], first.endpoints["disabled"]) == (1, 1)
    clock.advance(3600)
    later = operators.overview(notified.ctx, {}).notifications
    assert later.backlog == 2
    assert later.oldest_undelivered_age_s == pytest.approx((clock.now - made).total_seconds())


def test_operators_retry_any_merchants_failed_delivery(
    notified: Notified, clock: FakeClock
) -> None:
    failed = fail_for_good(notified, clock)
    clock.advance(60)
    delivery, event_type, payment_id = notify_admin.retry_delivery(
        notified.ctx, notified.bad.id, failed[0]
    )
    assert (delivery.status, event_type) == ("pending", "payment.succeeded")
    assert payment_id in notified.payments
    stored = delivery_row(notified.ctx, failed[0])
    assert (stored.status, stored.next_attempt_at) == ("pending", clock.now)
    assert stored.give_up_at == clock.now + timedelta(seconds=GIVE_UP_S)
    assert delivery_row(notified.ctx, failed[1]).status == "failed"


def test_operators_recover_an_endpoints_failed_deliveries(
    notified: Notified, clock: FakeClock
) -> None:
    failed = fail_for_good(notified, clock)
    created = delivery_row(notified.ctx, failed[0]).created_at
    assert (
        notify_admin.recover_deliveries(
            notified.ctx, notified.bad.id, since=created + timedelta(days=1)
        )
        == 0
    )
    assert notify_admin.recover_deliveries(notified.ctx, notified.bad.id, since=created) == 2
    assert {delivery_row(notified.ctx, d).status for d in failed} == {"pending"}
    with pytest.raises(ValidationFailed):
        notify_admin.recover_deliveries(
            notified.ctx, notified.bad.id, since=clock.now + timedelta(seconds=1)
        )


@pytest.mark.parametrize(
    ("case", "refusal"),
    [
        ("unknown endpoint", NotFound),
        ("another endpoint's delivery", NotFound),
        ("disabled endpoint", Conflict),  # the merchant's to switch back on
    ],
)
def test_operator_retries_are_refused_like_the_merchants(
    notified: Notified, case: str, refusal: type[Exception]
) -> None:
    [gone] = notified.globex.deliveries(notified.gone)
    [bad_one, *_] = notified.acme.deliveries(notified.bad)
    endpoint_id, delivery_id = {
        "unknown endpoint": ("we_nobody", bad_one["id"]),
        "another endpoint's delivery": (notified.good.id, bad_one["id"]),
        "disabled endpoint": (notified.gone.id, gone["id"]),
    }[case]
    with pytest.raises(refusal):
        notify_admin.retry_delivery(notified.ctx, endpoint_id, delivery_id)


def test_a_payments_deliveries_page_with_the_cursor(notified: Notified) -> None:
    pid = notified.payments[0]
    first, cursor = notify_admin.deliveries(
        notified.ctx, status=None, endpoint_id=None, payment_id=pid, limit=1, cursor=None
    )
    rest, end = notify_admin.deliveries(
        notified.ctx, status=None, endpoint_id=None, payment_id=pid, limit=5, cursor=cursor
    )
    assert end is None
    listed = first + rest
    assert {d.endpoint_id for d, *_ in listed} == {notified.good.id, notified.bad.id}
    assert {(t, p) for _, t, p, _ in listed} == {("payment.succeeded", pid)}


def csrf_of(page: str) -> str:
    return page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def test_the_endpoints_page_retries_and_recovers_behind_the_csrf_token(
    ui: FlaskClient, notified: Notified, clock: FakeClock
) -> None:
    failed = fail_for_good(notified, clock)
    page = signed_in(ui).get("/admin/ui/endpoints").get_data(as_text=True)
    for endpoint in (notified.good, notified.bad, notified.gone):
        assert f'data-testid="endpoint-{endpoint.id}"' in page
    assert "the endpoint answered 410 Gone" in page
    assert all(f'data-testid="delivery-{d}"' in page for d in failed)
    retry = f"/admin/ui/endpoints/{notified.bad.id}/deliveries/{failed[0]}/retry"
    back = "/admin/ui/endpoints?deliveries=failed"
    assert ui.post(retry, data={"next": back}).status_code == 400  # no CSRF token
    assert delivery_row(notified.ctx, failed[0]).status == "failed"
    done = ui.post(retry, data={"csrf_token": csrf_of(page), "next": back})
    assert done.status_code == 303
    assert done.headers["Location"] == f"{back}&msg=retried&id={failed[0]}"
    assert delivery_row(notified.ctx, failed[0]).status == "pending"
    shown = ui.get(done.headers["Location"]).get_data(as_text=True)
    assert f"Done: delivery {failed[0]} is pending and due now." in shown

    recover = f"/admin/ui/endpoints/{notified.bad.id}/recover"
    refused = ui.post(recover, data={"csrf_token": csrf_of(page), "since": "yesterday"})
    assert refused.status_code == 400
    assert "since: must be an RFC 3339 date-time" in refused.get_data(as_text=True)
    since = re.search(r'name="since" required value="([^"]+)"', page)
    assert since is not None
    recovered = ui.post(recover, data={"csrf_token": csrf_of(page), "since": since[1]})
    assert recovered.status_code == 303
    assert f"msg=recovered_one&id={notified.bad.id}" in recovered.headers["Location"]
    assert delivery_row(notified.ctx, failed[1]).status == "pending"


def test_the_endpoints_page_pages_failed_deliveries_with_the_apis_cursor(
    ui: FlaskClient, notified: Notified, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed = fail_for_good(notified, clock)
    monkeypatch.setattr(admin_ui, "PAGE_SIZE", 1)
    first = signed_in(ui).get(f"/admin/ui/endpoints?endpoint_id={notified.bad.id}")
    text = first.get_data(as_text=True)
    link = text.split('rel="next"', 1)[0].rsplit('href="', 1)[1].split('"', 1)[0]
    second = ui.get(link.replace("&amp;", "&")).get_data(as_text=True)
    on_first = [d for d in failed if f"delivery-{d}" in text]
    on_second = [d for d in failed if f"delivery-{d}" in second]
    assert len(on_first) == len(on_second) == 1
    assert set(on_first + on_second) == set(failed)
    assert 'rel="next"' not in second


def test_a_payment_page_lists_its_deliveries(ui: FlaskClient, notified: Notified) -> None:
    pid = notified.payments[0]
    page = signed_in(ui).get(f"/admin/ui/payments/{pid}").get_data(as_text=True)
    section = page.split('id="deliveries-heading"', 1)[1]
    assert section.count('data-testid="delivery-del_') == 2
    assert "HTTP 500" in section and "payment.succeeded" in section


@pytest.mark.parametrize(
    "path",
    [
        "/admin/ui/endpoints?status=broken",
        "/admin/ui/endpoints?deliveries=lost",
        "/admin/ui/endpoints?cursor=not-ours",
        "/admin/ui/endpoints?endpoint_id=we_%00",  # NUL: refused before PostgreSQL sees it
        "/admin/ui/payments/pay_%00",
        "/admin/ui/payments?q=order%00",
    ],
)
def test_bad_endpoint_page_queries_are_answers_not_errors(ui: FlaskClient, path: str) -> None:
    status = signed_in(ui).get(path).status_code
    assert 400 <= status < 500


@pytest.mark.parametrize(
    ("rate", "shown"),
    [
        (None, "–"),  # nothing attempted yet: no rate, not 0 %
        (0.0, "0 %"),
        (1.0, "100 %"),
        (0.975, "97.5 %"),
        (0.9996, "99.9 %"),  # one failure in thousands is never rounded up to 100 %
    ],
)
def test_success_rates_are_written_for_people(rate: float | None, shown: str) -> None:
    assert admin_ui_format.percent(rate) == shown
