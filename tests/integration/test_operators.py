"""The operator's page below the browser: its queries on SQLite and PostgreSQL, its session."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from flask.testing import FlaskClient
from support.app import MerchantAuth, make_settings, register_payment
from support.clock import FakeClock
from support.simulator import Simulator

from reconciler.adapters.models import Payment, PaymentEvent
from reconciler.bootstrap import Context, bootstrap
from reconciler.entrypoints import admin_ui
from reconciler.entrypoints.admin_ui import COOKIE, SESSION_MAX_AGE_S
from reconciler.entrypoints.app import create_app
from reconciler.services import operators
from reconciler.services.errors import NotFound, ValidationFailed

TOKEN = "ui-integration-token"  # test-only


@pytest.fixture
def ui(db_url: str, simulator: Simulator, clock: FakeClock) -> Iterator[FlaskClient]:
    ctx = bootstrap(
        make_settings(db_url, simulator.url, admin_token=TOKEN),
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
    rotated = bootstrap(make_settings(db_url, simulator.url, admin_token="rotated"), clock=clock)
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
