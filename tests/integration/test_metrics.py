"""`/metrics`, `/healthz` and `/readyz` as Prometheus and a load balancer see them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from support.app import SIM_SECRET, MerchantAuth, register_payment
from support.clock import FakeClock
from support.simulator import Simulator

from reconciler.bootstrap import Context
from reconciler.entrypoints.metrics import Metrics
from reconciler.services.sweep import Sweeper

ROOT = Path(__file__).resolve().parents[2]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: FlaskClient) -> Samples:
    """Fetch /metrics and index every sample by (name, labels)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    samples: Samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def signed_webhook(msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    key = base64.b64decode(SIM_SECRET.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
        "Content-Type": "application/json",
    }


@pytest.fixture
def sweeper(app: Flask, ctx: Context) -> Iterator[Sweeper]:
    metrics: Metrics = app.extensions["reconciler.metrics"]
    sweeper = Sweeper(ctx, observer=metrics.observe_sweep)
    metrics.sweeper = sweeper
    yield sweeper
    sweeper.close()


def register(
    client: FlaskClient, merchant: MerchantAuth, simulator: Simulator, reference: str
) -> str:
    """Track a payment that the simulator has already settled (no webhook: polls find out)."""
    gid: str = simulator.create(
        final_status="succeeded", settle_after_s=0, amount=1500, currency="EUR"
    )["id"]
    register_payment(client, merchant, gid, reference=reference, amount=1500)
    return gid


def test_metrics_expose_polls_webhooks_sweep_backlog_breaker_and_sync_states(
    client: FlaskClient,
    merchant: MerchantAuth,
    simulator: Simulator,
    sweeper: Sweeper,
    clock: FakeClock,
) -> None:
    register(client, merchant, simulator, "order-1")
    register(client, merchant, simulator, "order-2")
    clock.advance(5)

    before = scrape(client)
    assert value(before, "reconciler_payments", sync_state="awaiting_webhook") == 2
    assert value(before, "reconciler_payments", sync_state="settled") == 0
    assert value(before, "reconciler_due_backlog") == 0  # first poll waits 30 s
    assert value(before, "reconciler_oldest_pending_age_seconds") == pytest.approx(5)
    assert (
        "reconciler_polls_total",
        frozenset({("gateway", "simulator"), ("outcome", "ok")}),
    ) not in before
    assert value(before, "reconciler_sweep_duration_seconds_count") == 0

    clock.advance(60)
    assert value(scrape(client), "reconciler_due_backlog") == 2
    report = sweeper.sweep_once()
    assert report.polled == 2

    after = scrape(client)
    assert value(after, "reconciler_polls_total", gateway="simulator", outcome="ok") == 2
    assert value(after, "reconciler_sweep_duration_seconds_count") == 1
    assert value(after, "reconciler_sweep_duration_seconds_sum") > 0
    assert value(after, "reconciler_sweep_claimed_total") == 2
    assert value(after, "reconciler_breaker_state", gateway="simulator", state="closed") == 1
    assert value(after, "reconciler_breaker_state", gateway="simulator", state="open") == 0
    assert value(after, "reconciler_payments", sync_state="settled") == 2
    assert value(after, "reconciler_payments", sync_state="awaiting_webhook") == 0
    assert value(after, "reconciler_due_backlog") == 0
    assert value(after, "reconciler_oldest_pending_age_seconds") == 0


def test_webhook_results_are_counted_by_outcome(
    client: FlaskClient, merchant: MerchantAuth, simulator: Simulator, clock: FakeClock
) -> None:
    gid = register(client, merchant, simulator, "order-1")
    stamp = clock.now.isoformat().replace("+00:00", "Z")
    data = {"id": gid, "status": "succeeded", "amount": 1500, "currency": "EUR"}
    body = json.dumps(
        {"type": "payment.succeeded", "timestamp": stamp, "data": {**data, "updated_at": stamp}}
    ).encode()
    ts = int(clock.now.timestamp())
    headers = signed_webhook("msg_metrics_1", ts, body)
    assert client.post("/webhooks/simulator", data=body, headers=headers).status_code == 200
    assert client.post("/webhooks/simulator", data=body, headers=headers).status_code == 200
    forged = {**headers, "webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode()}
    forged["webhook-id"] = "msg_metrics_2"
    assert client.post("/webhooks/simulator", data=body, headers=forged).status_code == 401

    samples = scrape(client)
    webhooks = {
        dict(labels)["result"]: count
        for (name, labels), count in samples.items()
        if name == "reconciler_webhooks_total"
    }
    assert webhooks.pop("duplicate") == 1
    assert webhooks.pop("invalid_signature") == 1
    # The first delivery's result name is the service's (applied / accepted); exactly one.
    assert list(webhooks.values()) == [1]
    assert value(samples, "reconciler_payments", sync_state="settled") == 1


def test_breaker_state_shows_open_after_an_outage(
    client: FlaskClient,
    merchant: MerchantAuth,
    simulator: Simulator,
    sweeper: Sweeper,
    clock: FakeClock,
    ctx: Context,
) -> None:
    for i in range(ctx.settings.breaker_threshold + 1):
        register(client, merchant, simulator, f"order-{i}")
    clock.advance(60)
    for breaker in sweeper.breakers.values():
        for _ in range(ctx.settings.breaker_threshold):
            breaker.record_failure(clock())
    sweeper.sweep_once()
    samples = scrape(client)
    assert value(samples, "reconciler_breaker_state", gateway="simulator", state="open") == 1
    assert value(samples, "reconciler_breaker_state", gateway="simulator", state="closed") == 0
    assert value(samples, "reconciler_polls_skipped_total", gateway="simulator", reason="held") >= 1


def test_healthz_is_always_ok(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_is_503_until_a_sweep_has_run_then_200(
    client: FlaskClient, sweeper: Sweeper, clock: FakeClock, ctx: Context
) -> None:
    assert ctx.settings.sweep_enabled
    first = client.get("/readyz")
    assert first.status_code == 503
    assert first.json["database"] == "ok"
    assert first.json["sweep"] == "not recent"

    sweeper.sweep_once()
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["status"] == "ok"
    assert ready.json["last_sweep_at"] is not None

    # A sweep that stopped running makes the replica unready again.
    clock.advance(ctx.settings.ready_max_sweep_age_s + 1)
    assert client.get("/readyz").status_code == 503


def test_no_created_series_are_exposed(client: FlaskClient) -> None:
    text = client.get("/metrics").get_data(as_text=True)

    assert "_created" not in text


def test_http_requests_are_counted_by_route_template_not_by_path(
    client: FlaskClient, merchant: MerchantAuth
) -> None:
    for payment_id in ("pay_missing1", "pay_missing2"):
        assert client.get(f"/v1/payments/{payment_id}", headers=merchant.headers).status_code == 404
    assert client.get("/no/such/path").status_code == 404

    samples = scrape(client)
    name = "reconciler_http_request_duration_seconds_count"
    route = "/v1/payments/<payment_id>"
    assert value(samples, name, method="GET", route=route, status="404") == 2
    assert value(samples, name, method="GET", route="unmatched", status="404") == 1
    assert not any("pay_missing" in str(labels) for _, labels in samples)


def test_gateway_calls_are_timed_by_gateway_operation_and_outcome(
    client: FlaskClient,
    merchant: MerchantAuth,
    simulator: Simulator,
    sweeper: Sweeper,
    clock: FakeClock,
) -> None:
    created = client.post(
        "/v1/payments",
        json={"merchant_reference": "o-1", "gateway": "simulator", "amount": 1, "currency": "EUR"},
        headers=merchant.headers,
    )
    assert created.status_code == 201, created.json
    register(client, merchant, simulator, "o-2")
    clock.advance(60)
    sweeper.sweep_once()

    samples = scrape(client)
    name = "reconciler_gateway_call_duration_seconds_count"
    assert value(samples, name, gateway="simulator", operation="create", outcome="ok") == 1
    polls = value(samples, "reconciler_polls_total", gateway="simulator", outcome="ok")
    assert polls >= 1
    assert value(samples, name, gateway="simulator", operation="fetch", outcome="ok") == polls


COUNTER_FUNCTIONS = {"rate", "irate", "increase"}
GAUGE_FUNCTIONS = {"delta", "deriv", "idelta", "predict_linear"}


def selectors(node: object) -> Iterator[tuple[str | None, str]]:
    """Yield (enclosing range function, metric name) for every selector in a PromQL tree."""
    import promql_parser

    if isinstance(node, promql_parser.Call):
        for arg in node.args:
            inner = arg.vector_selector if isinstance(arg, promql_parser.MatrixSelector) else None
            if inner is not None:
                yield node.func.name, inner.name
            else:
                yield from selectors(arg)
    elif isinstance(node, promql_parser.VectorSelector):
        yield None, node.name
    elif isinstance(node, promql_parser.MatrixSelector):
        yield None, node.vector_selector.name
    else:
        for attr in ("lhs", "rhs", "expr"):
            child = getattr(node, attr, None)
            if child is not None:
                yield from selectors(child)


def documented_alerts() -> list[str]:
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split("## Alerts worth setting", 1)[1].split("\n## ", 1)[0]
    found = []
    for line in section.splitlines():
        cells = line.split("|")
        if len(cells) > 3:
            found += [e for e in re.findall(r"`([^`]+)`", cells[2]) if "reconciler_" in e]
    return found


def test_every_documented_alert_is_valid_promql_for_its_metric_types(
    client: FlaskClient, sweeper: Sweeper
) -> None:
    import promql_parser

    sweeper.sweep_once()
    types = {
        family.name: family.type
        for family in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))
    }

    def metric_type(series: str) -> str:
        for suffix in ("", "_total", "_bucket", "_count", "_sum"):
            family = series.removesuffix(suffix) if suffix else series
            if series.endswith(suffix) and family in types:
                return "counter" if types[family] == "histogram" and suffix else types[family]
        raise AssertionError(f"{series} is not exposed by /metrics")

    alerts = documented_alerts()
    assert len(alerts) >= 8
    for expression in alerts:
        tree = promql_parser.parse(expression)
        for function, series in selectors(tree):
            kind = metric_type(series)
            if function in COUNTER_FUNCTIONS:
                assert kind == "counter", f"{function}() over the {kind} {series}: {expression}"
            if function in GAUGE_FUNCTIONS:
                assert kind == "gauge", f"{function}() over the {kind} {series}: {expression}"
