"""The webhook reliability panel in a real browser: a day of webhooks, then the overview.

The service runs in this process (its clock moved by the test to fill 24 h), served on
loopback; Debian's chromium reads the page, axe-core checks it, and the panel's
screenshot is saved for the README (docs/img/reliability.png).
"""

from __future__ import annotations

import math
import os
import random
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from flask.testing import FlaskClient
from playwright.sync_api import Browser, expect
from support.app import MerchantAuth, make_settings, register_payment
from support.clock import FakeClock
from support.simulator import Simulator
from support.webhooks import deliver, event
from werkzeug.serving import make_server

from e2e.test_admin_ui import chromium  # noqa: F401 - its browser fixture
from reconciler.bootstrap import Context, bootstrap
from reconciler.entrypoints.app import create_app
from reconciler.entrypoints.commands import upgrade
from reconciler.services import reliability
from reconciler.services.merchants import create_merchant
from reconciler.services.sweep import Sweeper

TOKEN = "admin-test-token-long-enough-for-32-chars"
ROOT = Path(__file__).resolve().parents[2]
# `make screenshots` writes it into docs/img; a plain test run into an ignored folder.
SCREENSHOT = (
    Path(
        os.environ.get("SCREENSHOTS_DIR")
        or Path(__file__).resolve().parents[2] / "build" / "screenshots"
    )
    / "reliability.png"
)


@pytest.fixture
def day(tmp_path: Path, simulator: Simulator) -> Iterator[tuple[Context, str]]:
    """A service with a day of webhooks behind it, served on loopback."""
    clock = FakeClock()
    settings = make_settings(
        f"sqlite:///{tmp_path / 'reconciler.db'}",
        simulator.url,
        admin_token=TOKEN,
        poll_first_delay_s="auto",
    )
    upgrade(settings)
    ctx = bootstrap(settings, clock=clock, rand=random.Random(1).random)
    app = create_app(ctx=ctx)
    client = app.test_client()
    record, key = create_merchant(ctx, "acme")
    fill(ctx, client, MerchantAuth(record.id, key), simulator, clock)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ctx, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        ctx.close()


def fill(
    ctx: Context, client: FlaskClient, shop: MerchantAuth, simulator: Simulator, clock: FakeClock
) -> None:
    """24 hours of terminal webhooks, slower in the afternoon; then polls that beat some."""
    rng = random.Random(9)
    start = clock.now
    for hour in range(24):
        clock.now = start + timedelta(hours=hour)
        median = 3.0 if not 13 <= hour <= 16 else 12.0
        for n in range(30):
            delay = rng.lognormvariate(math.log(median), 0.6)
            body = event(f"sim_day_{hour}_{n}", "succeeded", clock.now - timedelta(seconds=delay))
            assert deliver(client, clock, f"msg_day_{hour}_{n}", body).status_code == 200
        reliability.flush(ctx)
    gateway_ids = [
        simulator.create(amount=1000, currency="EUR", reference=f"p{n}")["id"] for n in range(12)
    ]
    for gid in gateway_ids:
        register_payment(client, shop, gid)
    clock.advance(30)
    sweeper = Sweeper(ctx)
    try:
        sweeper.sweep_once(clock.now)
    finally:
        sweeper.close()
    clock.advance(20)
    for gid in gateway_ids[:10]:  # these webhooks came after all: late, not missed
        body = event(gid, "succeeded", clock.now - timedelta(seconds=45))
        deliver(client, clock, f"msg_late_{gid}", body)
    reliability.flush(ctx)
    reliability.refresh(ctx)


def test_the_panel_shows_a_day_of_webhooks_and_passes_axe(
    chromium: Browser,  # noqa: F811
    day: tuple[Context, str],
) -> None:
    _, base = day
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        page.goto(f"{base}/admin/ui/sign-in")
        page.get_by_label("Admin token").fill(TOKEN)
        page.get_by_role("button", name="Sign in").click()
        page.goto(f"{base}/admin/ui/")
        panel = page.get_by_test_id("reliability-default-simulator")
        expect(panel).to_be_visible()
        expect(page.get_by_test_id("first-delay-default-simulator")).not_to_have_text("30 s")
        expect(panel).to_contain_text("auto: the observed quantile")
        expect(panel.locator("polyline.line-p95")).to_have_count(1)
        results = Axe().run(page)
        serious = [
            (v["id"], [n["target"] for n in v["nodes"]])
            for v in results.response["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert serious == [], results.generate_report()
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        panel.screenshot(path=str(SCREENSHOT))
    finally:
        context.close()
