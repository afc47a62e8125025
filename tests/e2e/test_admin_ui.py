"""The operator's page in a real browser: Debian's Chromium, driven by Playwright.

One `reconciler serve` (waitress, in-process sweep, SQLite), one simulator and two merchant
endpoints on loopback (one answers 200, one 500) serve the whole module; each test opens its
own browser context (its own cookies). The run also checks every page with axe-core and saves
the screenshots the README and docs/ show.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, expect, sync_playwright
from support.app import SIM_SECRET
from support.receiver import Receiver, run_receiver
from support.simulator import Simulator, run_simulator

from e2e.conftest import Service, free_port, run_service, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

TOKEN = "ui-test-admin-token-not-a-secret"  # test-only
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
# `make screenshots` writes them into docs/img; a plain test run into an ignored folder, so
# `make test` leaves the tree as it found it.
SCREENSHOTS = Path(
    os.environ.get("SCREENSHOTS_DIR")
    or Path(__file__).resolve().parents[2] / "build" / "screenshots"
)
SETTLE_WITHIN_S = 30.0
# A delivery to the failing endpoint fails this long after it is made (or revived): long
# enough that a test reads a revived one as pending before it can fail again.
DELIVERY_GIVE_UP_S = 15.0
SYNC_STATES = ("awaiting_webhook", "polling", "settled", "gave_up", "needs_review")


@dataclass
class Stack:
    """The running service and simulator, a merchant, and the payments made for the tests."""

    service: Service
    sim: Simulator
    merchant: dict[str, str]
    payments: list[dict[str, Any]]  # settled, as the merchant API shows them
    healthy: str  # the merchant's endpoint that answers 200
    failing: str  # the merchant's endpoint that answers 500

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    def ui(self, path: str = "") -> str:
        return f"{self.service.url}/admin/ui{path}"

    def flag_for_review(self, payment_id: str) -> None:
        """Report a contradicting terminal status through the admin API: a conflict."""
        response = self.service.post(
            f"/admin/payments/{payment_id}/report",
            json={"status": "failed", "note": "the bank says it bounced"},
            headers=self.admin,
        )
        assert response.status_code == 200, response.text
        assert response.json()["payment"]["sync"]["state"] == "needs_review", response.text

    def deliveries(self, endpoint_id: str, status: str | None = None) -> list[dict[str, Any]]:
        """Read an endpoint's deliveries through the admin API (one page holds them all)."""
        params = {"endpoint_id": endpoint_id, "limit": "100"}
        if status is not None:
            params["status"] = status
        answer = self.service.get("/admin/deliveries", params=params, headers=self.admin)
        assert answer.status_code == 200, answer.text
        return list(answer.json()["data"])

    def failed_deliveries(self, at_least: int = 2) -> list[str]:
        """Wait until the failing endpoint has given up on `at_least` deliveries; their ids."""
        found: list[str] = []

        def enough() -> bool:
            found[:] = [d["id"] for d in self.deliveries(self.failing, "failed")]
            return len(found) >= at_least

        wait_until(enough, 4 * DELIVERY_GIVE_UP_S, f"{at_least} deliveries failed for good")
        return found

    def delivered_to_the_healthy_endpoint(self) -> None:
        """Wait until every delivery to the healthy endpoint has arrived."""

        def all_in() -> bool:
            rows = self.deliveries(self.healthy)
            return bool(rows) and all(d["status"] == "delivered" for d in rows)

        wait_until(all_in, SETTLE_WITHIN_S, "every delivery to the healthy endpoint")

    def status_of(self, endpoint_id: str, delivery_id: str) -> str:
        [found] = [d for d in self.deliveries(endpoint_id) if d["id"] == delivery_id]
        return str(found["status"])


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        message = (
            "Debian's chromium is not installed: run `make browser` "
            "(apt-get install -y chromium, as root)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    port = free_port()
    tmp = tmp_path_factory.mktemp("admin-ui")
    with (
        run_receiver() as healthy,
        run_receiver() as failing,
        run_simulator(
            seed=21,
            settle_min=1,
            settle_max=2,
            outcomes="succeeded=1",
            webhook_url=f"http://127.0.0.1:{port}/webhooks/simulator",
            webhook_secret=SIM_SECRET,
        ) as sim,
        run_service(
            tmp,
            port=port,
            simulator_url=sim.url,
            webhook_secret=SIM_SECRET,
            admin_token=TOKEN,
            breaker_threshold=3,
            breaker_cooldown_s=120.0,
            notify_allow_private=True,
            notify_base_delay_s=1.0,
            notify_max_delay_s=4.0,
            notify_give_up_after_s=DELIVERY_GIVE_UP_S,
        ) as service,
    ):
        failing.status = 500
        merchant = service.create_merchant("acme")
        endpoint_ids = [register_endpoint(service, merchant, r) for r in (healthy, failing)]
        register_endpoint(service, service.create_merchant("globex"), healthy)
        ids = []
        for n in range(1, 5):
            body = {
                "merchant_reference": f"order-{n:04d}",
                "gateway": "simulator",
                "amount": 1250 * n,
                "currency": "EUR",
            }
            response = service.post("/v1/payments", json=body, headers=merchant)
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
        rows: list[dict[str, Any]] = []

        def settled() -> bool:
            rows[:] = [service.get(f"/v1/payments/{i}", headers=merchant).json() for i in ids]
            return all(row["sync"]["state"] == "settled" for row in rows)

        wait_until(settled, SETTLE_WITHIN_S, "every payment settled")
        built = Stack(service, sim, merchant, rows, *endpoint_ids)
        built.flag_for_review(ids[0])  # resolved by a test
        built.flag_for_review(ids[1])  # stays on the review page for the screenshot
        yield built


def register_endpoint(service: Service, merchant: dict[str, str], receiver: Receiver) -> str:
    body = {"url": receiver.url, "description": f"answers {receiver.status}"}
    response = service.post("/v1/webhook_endpoints", json=body, headers=merchant)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    """A fresh browser context's page; the test fails if the CSP blocked anything on it."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    opened = context.new_page()
    blocked: list[str] = []
    opened.on(
        "console",
        lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None,
    )
    yield opened
    context.close()
    assert blocked == [], "the page broke its own Content-Security-Policy"


def sign_in(page: Page, stack: Stack, token: str = TOKEN) -> None:
    page.goto(stack.ui("/"))
    page.get_by_label("Admin token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    if token == TOKEN:
        expect(page.get_by_role("heading", level=1)).to_have_text("Overview")


def test_signing_in_with_the_admin_token_sets_a_strict_http_only_session(
    page: Page, stack: Stack
) -> None:
    sign_in(page, stack)
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    (cookie,) = page.context.cookies()
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/admin/ui"
    assert cookie["expires"] > 0, "a session cookie with an expiry, not one for ever"


def test_a_wrong_token_is_refused_and_sets_no_cookie(page: Page, stack: Stack) -> None:
    sign_in(page, stack, token="not-the-token")
    expect(page.get_by_role("alert")).to_have_text("That is not the admin token.")
    assert page.context.cookies() == []


@pytest.mark.parametrize(
    "path", ["/", "/review", "/endpoints", "/payments", "/payments/pay_anything"]
)
def test_pages_without_a_session_send_you_to_sign_in(page: Page, stack: Stack, path: str) -> None:
    page.goto(stack.ui(path))
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    assert page.url.startswith(stack.ui("/sign-in?next="))


@pytest.mark.parametrize("action", ["refresh", "report", "resolve", "sign-out", "retry", "recover"])
def test_actions_without_a_session_are_refused(stack: Stack, action: str) -> None:
    pid = stack.payments[1]["id"]
    path = {
        "sign-out": "/sign-out",
        "retry": f"/endpoints/{stack.failing}/deliveries/del_anything/retry",
        "recover": f"/endpoints/{stack.failing}/recover",
    }.get(action, f"/payments/{pid}/{action}")
    data = {"note": "n", "status": "failed", "since": "2026-01-01T00:00:00Z", "csrf_token": "x"}
    response = requests.post(stack.ui(path), data=data, timeout=10)
    assert response.status_code == 403, response.text
    assert response.headers["Content-Type"] == "application/problem+json"


def test_a_form_posted_after_the_session_is_gone_is_refused(page: Page, stack: Stack) -> None:
    pid = stack.payments[1]["id"]
    sign_in(page, stack)
    page.goto(stack.ui(f"/payments/{pid}"))
    page.context.clear_cookies()
    form = page.locator("form[action$='/report']")
    form.get_by_label("Note (where you read it)").fill("sent without a session")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        form.get_by_role("button", name="Report").click()
    assert answer.value.status == 403
    events = stack.service.get(f"/v1/payments/{pid}/events", headers=stack.merchant).json()
    assert all(e["detail"].get("note") != "sent without a session" for e in events["data"])


def test_the_admin_token_in_a_header_does_not_open_the_page(stack: Stack) -> None:
    response = requests.get(stack.ui("/"), headers=stack.admin, timeout=10, allow_redirects=False)
    assert response.status_code == 303
    assert "/admin/ui/sign-in" in response.headers["Location"]


@pytest.mark.parametrize("tamper", ["remove", "forge"])
def test_a_form_posted_without_its_csrf_token_gets_a_400(
    page: Page, stack: Stack, tamper: str
) -> None:
    pid = stack.payments[1]["id"]
    sign_in(page, stack)
    page.goto(stack.ui(f"/payments/{pid}"))
    form = page.locator("form[action$='/report']")
    hidden = form.locator("input[name=csrf_token]")
    if tamper == "remove":
        hidden.evaluate("input => input.remove()")
    else:
        hidden.evaluate("input => { input.value = 'forged-by-another-site' }")
    form.get_by_label("Note (where you read it)").fill("should not be applied")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        form.get_by_role("button", name="Report").click()
    assert answer.value.status == 400
    assert answer.value.headers["content-type"] == "application/problem+json"
    events = stack.service.get(f"/v1/payments/{pid}/events", headers=stack.merchant).json()
    assert all(e["detail"].get("note") != "should not be applied" for e in events["data"])


def test_every_page_sends_a_csp_without_inline_script_and_forbids_framing(stack: Stack) -> None:
    response = requests.get(stack.ui("/sign-in"), timeout=10)
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"


def count_through_admin_api(stack: Stack) -> tuple[Counter[str], Counter[str]]:
    """Page through GET /admin/payments with its cursor; count by status and sync state."""
    statuses: Counter[str] = Counter()
    states: Counter[str] = Counter()
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = stack.service.get("/admin/payments", params=params, headers=stack.admin).json()
        for row in page["data"]:
            statuses[row["status"]] += 1
            states[row["sync"]["state"]] += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return statuses, states


def figures_shown(page: Page) -> dict[str, int]:
    page.reload()
    names = [f"status-{s}" for s in ("pending", "succeeded", "failed", "canceled")]
    names += [f"sync-{s}" for s in SYNC_STATES]
    names += ["total", "need-a-human", "due-now", "webhooks-hour", "polls-hour"]
    return {name: int(page.get_by_test_id(name).inner_text()) for name in names}


def figures_from_the_api(stack: Stack) -> dict[str, int]:
    statuses, states = count_through_admin_api(stack)
    sources: Counter[str] = Counter()
    for row in stack.payments:
        events = stack.service.get(f"/v1/payments/{row['id']}/events", headers=stack.merchant)
        sources.update(e["source"] for e in events.json()["data"])
    return {
        **{f"status-{s}": statuses[s] for s in ("pending", "succeeded", "failed", "canceled")},
        **{f"sync-{s}": states[s] for s in SYNC_STATES},
        "total": sum(statuses.values()),
        "need-a-human": states["needs_review"] + states["gave_up"],
        "due-now": 0,  # every payment is settled or flagged: none is due
        # The chart counts the timeline's webhook and poll rows of the last hour.
        "webhooks-hour": sources["webhook"],
        "polls-hour": sources["poll"],
    }


def test_the_overview_numbers_match_the_admin_api(page: Page, stack: Stack) -> None:
    sign_in(page, stack)
    seen: list[tuple[dict[str, int], dict[str, int]]] = []

    def agree() -> bool:
        # A webhook still in flight may land between the two reads: read both again.
        seen.append((figures_shown(page), figures_from_the_api(stack)))
        return seen[-1][0] == seen[-1][1]

    try:
        wait_until(agree, 20, "the overview agreeing with the admin API", interval=0.5)
    finally:
        if seen:
            shown, expected = seen[-1]
            assert shown == expected  # on failure, the diff of the last two reads


def test_resolving_a_review_with_a_note_shows_it_in_the_timeline(page: Page, stack: Stack) -> None:
    pid = stack.payments[0]["id"]
    sign_in(page, stack)
    page.get_by_role("link", name="Needs a human").click()
    row = page.get_by_test_id(f"review-{pid}")
    expect(row).to_contain_text("needs_review")
    row.get_by_text(f"Act on {pid}").click()
    row.get_by_label("Why is it resolved?").fill("Checked the gateway dashboard: refunded")
    row.get_by_role("button", name="Resolve").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Needs a human")
    expect(page.get_by_test_id(f"review-{pid}")).to_have_count(0)
    page.goto(stack.ui(f"/payments/{pid}"))
    expect(page.get_by_test_id("sync-state")).to_have_text("settled")
    resolved = page.get_by_test_id("timeline").locator("tr", has_text="resolved")
    expect(resolved).to_contain_text("Checked the gateway dashboard: refunded")
    expect(resolved).to_contain_text("admin")
    api = stack.service.get(f"/admin/payments/{pid}", headers=stack.admin).json()
    assert api["sync"]["state"] == "settled"
    assert api["review_reason"] is None


@pytest.mark.parametrize("which", ["id", "merchant_reference", "gateway_payment_id"])
def test_a_payment_is_found_by_each_of_its_ids(page: Page, stack: Stack, which: str) -> None:
    payment = stack.payments[2]
    sign_in(page, stack)
    page.get_by_label("Payment id, reference or gateway id").fill(payment[which])
    page.get_by_label("Payment id, reference or gateway id").press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Payment {payment['id']}")
    expect(page.get_by_test_id("reference")).to_have_text(payment["merchant_reference"])
    expect(page.get_by_test_id("gateway-id")).to_have_text(payment["gateway_payment_id"])
    expect(page.get_by_test_id("timeline")).to_contain_text("succeeded")


def test_an_unknown_id_finds_nothing(page: Page, stack: Stack) -> None:
    sign_in(page, stack)
    page.goto(stack.ui("/payments?q=pay_nobody"))
    expect(page.get_by_test_id("no-match")).to_contain_text("pay_nobody")


@pytest.mark.parametrize("name", ["sign-in", "overview", "review", "payment", "find", "endpoints"])
def test_each_page_passes_axe(page: Page, stack: Stack, name: str) -> None:
    """Check labels, contrast and the rest with axe-core; save the README's screenshots."""
    paths = {
        "sign-in": "/sign-in",
        "overview": "/",
        "review": "/review",
        "payment": f"/payments/{stack.payments[1]['id']}",
        "find": "/payments?q=order",
        "endpoints": "/endpoints",
    }
    if name in ("endpoints", "payment", "overview"):
        stack.failed_deliveries()  # something to redo on the page (and in its screenshot)
    if name != "sign-in":
        sign_in(page, stack)
    page.goto(stack.ui(paths[name]))
    if name == "review":
        page.get_by_text(f"Act on {stack.payments[1]['id']}").click()  # the forms, open
    if name == "endpoints":
        page.get_by_text(f"Recover {stack.failing}").click()  # the form, open
    results = Axe().run(page)
    serious = [
        (v["id"], v["help"], [n["target"] for n in v["nodes"]])
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert serious == [], results.generate_report()
    if name in ("overview", "review", "payment", "endpoints"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_the_breaker_opens_on_the_overview_during_an_outage(page: Page, stack: Stack) -> None:
    # Payments the simulator will not settle for an hour keep the sweep polling.
    for n in range(3):
        existing = stack.sim.create(amount=700, currency="EUR", settle_after_s=3600)
        body = {
            "merchant_reference": f"slow-{n}",
            "gateway": "simulator",
            "amount": 700,
            "currency": "EUR",
            "gateway_payment_id": existing["id"],
        }
        response = stack.service.post("/v1/payments", json=body, headers=stack.merchant)
        assert response.status_code == 201, response.text
    sign_in(page, stack)
    expect(page.get_by_test_id("breaker-simulator")).to_have_text("closed")
    stack.sim.outage(600)

    def open_on_the_page() -> bool:
        page.goto(stack.ui("/"))
        return page.get_by_test_id("breaker-simulator").inner_text() == "open"

    wait_until(open_on_the_page, 60, "the simulator's breaker shown open", interval=0.5)
    expect(page.get_by_test_id("opened-simulator")).to_contain_text("ago")
    failures = int(page.get_by_test_id("failures-simulator").inner_text())
    assert failures >= 3, "opened at the threshold of failures in a row"


def test_the_overview_reloads_itself_until_the_operator_pauses_it(page: Page, stack: Stack) -> None:
    page.clock.install()
    sign_in(page, stack)
    with page.expect_event("load"):
        page.clock.run_for(11_000)
    page.get_by_label("Reload every 10 s").uncheck()
    page.evaluate("window.stillHere = true")
    page.clock.run_for(60_000)
    assert page.evaluate("window.stillHere") is True, "no reload while paused"
    page.reload()
    expect(page.get_by_label("Reload every 10 s")).not_to_be_checked()


def test_the_endpoints_page_shows_a_failing_endpoint(page: Page, stack: Stack) -> None:
    stack.failed_deliveries(at_least=1)
    stack.delivered_to_the_healthy_endpoint()
    sign_in(page, stack)
    failing_now = stack.service.get(
        "/admin/webhook_endpoints", params={"status": "failing"}, headers=stack.admin
    ).json()["data"]
    assert [e["id"] for e in failing_now] == [stack.failing]
    expect(page.get_by_test_id("endpoints-failing")).to_have_text("1")
    page.get_by_test_id("endpoints-failing").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Endpoints")
    failing = page.get_by_test_id(f"endpoint-{stack.failing}")
    expect(failing.get_by_test_id("endpoint-status")).to_contain_text("failing since")
    expect(failing.get_by_test_id("success-rate")).to_have_text("0 %")
    # This process sweeps, so it knows the endpoint's breaker (whatever it is right now).
    breaker = failing.get_by_test_id("endpoint-breaker").inner_text()
    assert breaker in ("closed", "open", "half_open")
    expect(page.get_by_test_id(f"endpoint-{stack.healthy}")).to_have_count(0)  # not failing
    page.get_by_role("link", name="All", exact=True).click()
    healthy = page.get_by_test_id(f"endpoint-{stack.healthy}")
    expect(healthy.get_by_test_id("success-rate")).to_have_text("100 %")
    expect(healthy.get_by_test_id("endpoint-breaker")).to_have_text("closed")
    expect(page.get_by_role("heading", name="globex")).to_be_visible()


def test_retry_puts_a_failed_delivery_back_to_pending(page: Page, stack: Stack) -> None:
    target = stack.failed_deliveries(at_least=1)[0]
    sign_in(page, stack)
    page.get_by_role("link", name="Endpoints").click()
    row = page.get_by_test_id(f"delivery-{target}")
    expect(row.get_by_test_id("delivery-status")).to_have_text("failed")
    row.get_by_role("button", name="Retry").click()
    expect(page.get_by_test_id("done")).to_have_text(
        f"Done: delivery {target} is pending and due now."
    )
    assert stack.status_of(stack.failing, target) == "pending"


def test_recover_puts_an_endpoints_failed_deliveries_back_to_pending(
    page: Page, stack: Stack
) -> None:
    failed = stack.failed_deliveries(at_least=2)
    sign_in(page, stack)
    page.goto(stack.ui(f"/endpoints?endpoint_id={stack.failing}"))
    row = page.get_by_test_id(f"endpoint-{stack.failing}")
    row.get_by_text(f"Recover {stack.failing}").click()
    row.get_by_role("button", name="Recover").click()
    expect(page.get_by_test_id("done")).to_contain_text(f"of {stack.failing} are pending again")
    recovered = int(page.get_by_test_id("done").inner_text().split()[1])
    assert recovered >= len(failed)
    assert {stack.status_of(stack.failing, d) for d in failed} == {"pending"}


def test_a_payments_deliveries_are_listed(page: Page, stack: Stack) -> None:
    stack.delivered_to_the_healthy_endpoint()
    pid = stack.payments[2]["id"]
    sign_in(page, stack)
    page.goto(stack.ui(f"/payments/{pid}"))
    deliveries = page.get_by_test_id("deliveries")
    [to_healthy] = [d for d in stack.deliveries(stack.healthy) if d["payment_id"] == pid]
    row = deliveries.get_by_test_id(f"delivery-{to_healthy['id']}")
    expect(row).to_contain_text("payment.succeeded")
    expect(row).to_contain_text(stack.healthy)
    expect(row.get_by_test_id("delivery-status")).to_have_text("delivered")
    expect(row).to_contain_text("HTTP 200")
    [to_failing] = [d for d in stack.deliveries(stack.failing) if d["payment_id"] == pid]
    expect(deliveries.get_by_test_id(f"delivery-{to_failing['id']}")).to_contain_text(stack.failing)
