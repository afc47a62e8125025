"""The operator's page holds up: sign-in is rate-limited and logged, notices are fixed codes,
`next` cannot inject a header, every admin answer carries its headers, sign-out revokes,
and a banner says when a breaker is open or deliveries fail."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient
from support.app import make_settings
from support.clock import FakeClock
from support.simulator import Simulator

from reconciler.adapters.models import WebhookEndpoint
from reconciler.bootstrap import Context, bootstrap
from reconciler.entrypoints.admin_ui import COOKIE
from reconciler.entrypoints.admin_ui_base import SIGN_IN_FAILURES, SIGN_IN_WINDOW
from reconciler.entrypoints.app import create_app
from reconciler.services.endpoints import create_endpoint
from reconciler.services.merchants import create_merchant
from reconciler.services.sweep import Sweeper

TOKEN = "hardening-admin-token-long-enough-32"  # test-only
PAGE_HEADERS = ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options")


@pytest.fixture
def service(db_url: str, simulator: Simulator, clock: FakeClock) -> Iterator[Context]:
    settings = make_settings(db_url, simulator.url, admin_token=TOKEN, notify_allow_private=1)
    ctx = bootstrap(settings, clock=clock, rand=random.Random(9).random)
    yield ctx
    ctx.close()


@pytest.fixture
def ui(service: Context) -> FlaskClient:
    return create_app(ctx=service).test_client()


def sign_in(ui: FlaskClient, token: str = TOKEN, **environ: str) -> int:
    answer = ui.post("/admin/ui/sign-in", data={"token": token}, environ_base=environ)
    return answer.status_code


def test_sign_in_is_refused_per_client_after_too_many_failures_until_the_window_passes(
    ui: FlaskClient, clock: FakeClock
) -> None:
    for _ in range(SIGN_IN_FAILURES):
        assert sign_in(ui, "wrong") == 403

    locked = ui.post("/admin/ui/sign-in", data={"token": TOKEN})
    assert locked.status_code == 429  # even the right token: no more guesses
    assert int(locked.headers["Retry-After"]) > 0
    assert "Too many failed sign-ins" in locked.get_data(as_text=True)
    assert sign_in(ui, TOKEN, REMOTE_ADDR="192.0.2.7") == 303  # another client is not locked

    clock.advance(SIGN_IN_WINDOW.total_seconds() + 1)
    assert sign_in(ui) == 303


def test_failed_sign_ins_are_logged_with_the_client_and_never_the_token(
    ui: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    guess = "a-guess-that-is-almost-the-token"

    sign_in(ui, guess, REMOTE_ADDR="198.51.100.4")

    [failure] = [r for r in caplog.records if r.getMessage() == "admin sign-in failed"]
    assert failure.levelno == logging.WARNING
    assert failure.__dict__["client"] == "198.51.100.4"
    assert all(guess not in r.getMessage() and guess not in str(r.__dict__) for r in caplog.records)


@pytest.mark.parametrize(
    "query",
    [
        "done=Refund+the+customer+at+evil.example",  # the old free-text parameter
        "msg=whatever&id=pay_1",  # not a code
        "msg=resolved&id=<script>",  # an id no payment can have
        "msg=recovered&id=we_1&n=lots",
        "msg=reported&id=pay_1&outcome=refund+now",
    ],
)
def test_a_notice_is_only_ever_one_of_the_fixed_messages(ui: FlaskClient, query: str) -> None:
    sign_in(ui)

    page = ui.get(f"/admin/ui/?{query}").get_data(as_text=True)

    assert 'data-testid="done"' not in page
    assert "evil.example" not in page and "refund now" not in page


def test_a_fixed_message_is_shown_with_its_checked_id(ui: FlaskClient) -> None:
    sign_in(ui)

    page = ui.get("/admin/ui/?msg=resolved&id=pay_123").get_data(as_text=True)

    assert "Done: the review of pay_123 is resolved." in page


@pytest.mark.parametrize(
    "target", ["/admin/ui/\r\nSet-Cookie: x=1", "/admin/ui/%0d%0a", "/admin/ui/\x00"]
)
def test_a_control_character_in_next_goes_to_the_overview_not_a_500(
    ui: FlaskClient, target: str
) -> None:
    posted = ui.post("/admin/ui/sign-in", data={"token": TOKEN, "next": target})
    shown = ui.get("/admin/ui/sign-in", query_string={"next": target})

    assert posted.status_code == 303
    assert posted.headers["Location"] in ("/admin/ui/", target.replace("\r\n", ""))
    assert "\r" not in posted.headers["Location"] and "\n" not in posted.headers["Location"]
    assert shown.status_code == 200


@pytest.mark.parametrize(
    "path",
    ["/admin/ui/no-such-page", "/admin/ui/sign-in", "/admin/ui/", "/admin/ui/static/admin.css"],
)
def test_every_page_answer_has_the_security_headers_and_no_store(
    ui: FlaskClient, path: str
) -> None:
    answer = ui.get(path)
    answer.close()  # the stylesheet is streamed from its file

    for header in PAGE_HEADERS:
        assert header in answer.headers, (path, answer.status_code)
    assert answer.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/admin/payments", {"Authorization": f"Bearer {TOKEN}"}),
        ("/admin/payments", {}),  # a 401
        ("/admin/deliveries", {"Authorization": f"Bearer {TOKEN}"}),
        ("/admin/nothing-here", {"Authorization": f"Bearer {TOKEN}"}),  # a 404
    ],
)
def test_every_admin_api_answer_is_no_store(
    ui: FlaskClient, path: str, headers: dict[str, str]
) -> None:
    assert ui.get(path, headers=headers).headers["Cache-Control"] == "no-store"


def test_the_merchant_api_is_not_touched(ui: FlaskClient) -> None:
    assert "Content-Security-Policy" not in ui.get("/healthz").headers


def test_sign_out_revokes_the_session_on_the_server(ui: FlaskClient) -> None:
    sign_in(ui)
    cookie = ui.get_cookie(COOKIE, path="/admin/ui")
    assert cookie is not None
    page = ui.get("/admin/ui/").get_data(as_text=True)
    csrf = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]

    out = ui.post("/admin/ui/sign-out", data={"csrf_token": csrf})
    assert out.status_code == 303
    assert "msg=signed_out" in out.headers["Location"]

    ui.set_cookie(COOKIE, cookie.value, path="/admin/ui")  # a copy kept from before
    again = ui.get("/admin/ui/")
    assert again.status_code == 303
    assert again.headers["Location"].startswith("/admin/ui/sign-in")


def test_a_banner_on_every_page_while_a_gateway_breaker_is_open(
    ui: FlaskClient, service: Context, clock: FakeClock
) -> None:
    sweeper = Sweeper(service)
    try:
        ui.application.extensions["reconciler.metrics"].sweeper = sweeper
        sign_in(ui)
        assert 'data-testid="banner"' not in ui.get("/admin/ui/").get_data(as_text=True)

        sweeper.engine.breaker(sweeper.polls.name, "simulator").trip(clock(), "HTTP 503")

        for path in ("/admin/ui/", "/admin/ui/review", "/admin/ui/endpoints", "/admin/ui/payments"):
            page = ui.get(path).get_data(as_text=True)
            assert 'data-testid="banner"' in page, path
            assert "The simulator gateway&#39;s breaker is open: HTTP 503." in page
    finally:
        sweeper.close()


def test_a_banner_while_deliveries_to_an_endpoint_are_failing(
    ui: FlaskClient, service: Context, clock: FakeClock
) -> None:
    merchant, _ = create_merchant(service, "acme")
    endpoint, _ = create_endpoint(
        service, merchant, url="http://127.0.0.1:9/", events=None, description=None
    )
    sign_in(ui)
    with service.sessions.begin() as session:
        row = session.get(WebhookEndpoint, endpoint.id)
        assert row is not None
        row.failing_since = clock()

    page = ui.get("/admin/ui/review").get_data(as_text=True)

    assert "Deliveries to merchants are failing: 1 endpoint is failing." in page


def test_no_banner_before_signing_in(ui: FlaskClient, service: Context, clock: FakeClock) -> None:
    sweeper = Sweeper(service)
    try:
        ui.application.extensions["reconciler.metrics"].sweeper = sweeper
        sweeper.engine.breaker(sweeper.polls.name, "simulator").trip(clock(), "HTTP 503")
        assert "banner" not in ui.get("/admin/ui/sign-in").get_data(as_text=True)
    finally:
        sweeper.close()
