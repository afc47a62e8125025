"""The gateway simulator as a real process on loopback: idempotency, clock, faults, webhooks."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from support.simulator import Simulator, run_simulator

from reconciler.adapters.gateways.base import CreateRequest, TransientError
from reconciler.adapters.gateways.simulator import SimulatorGateway
from reconciler.adapters.gateways.transport import HttpClient
from reconciler.config import GatewayConfig
from reconciler.domain.status import Status

SECRET = "whsec_" + base64.b64encode(b"integration-test-secret-32bytes!").decode()
BODY = {"amount": 4990, "currency": "INR", "reference": "order-1"}


def create(sim: Simulator, key: str = "key-1", timeout: float = 5.0, **body: Any) -> Any:
    return requests.post(
        f"{sim.url}/v1/payments",
        json={**BODY, **body},
        headers={"Idempotency-Key": key},
        timeout=timeout,
    )


def fetch(sim: Simulator, payment_id: str, timeout: float = 5.0) -> requests.Response:
    return requests.get(f"{sim.url}/v1/payments/{payment_id}", timeout=timeout)


def sim_now(sim: Simulator) -> datetime:
    return datetime.fromisoformat(sim.clock()["now"])


def adapter(sim: Simulator, session: HttpClient) -> SimulatorGateway:
    config = GatewayConfig("simulator", api_base=sim.url, webhook_secrets=(SECRET,))
    return SimulatorGateway(config, session=session, timeout=(1, 2), create_timeout=(1, 2))


@pytest.fixture
def session() -> Iterator[HttpClient]:
    with HttpClient() as session:
        yield session


# -- a loopback webhook receiver -------------------------------------------------------------


@dataclass
class Receiver:
    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)  # answers to give first, then 200
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events(self) -> list[tuple[str, str]]:
        """(webhook-id, payment status) per request received, in arrival order."""
        with self.lock:
            return [(h["webhook-id"], json.loads(b)["data"]["status"]) for h, b in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with state.lock:
                state.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                code = state.answers.pop(0) if state.answers else 200
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/webhooks/simulator"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def webhook_sim(receiver: Receiver, **flags: Any) -> Any:
    return run_simulator(webhook_url=receiver.url, webhook_secret=SECRET, seed=7, **flags)


# -- the gateway API --------------------------------------------------------------------------


def test_the_same_idempotency_key_returns_the_same_payment_and_never_a_second() -> None:
    with run_simulator(seed=1) as sim:
        first, again = create(sim), create(sim)
        assert first.status_code == 201
        assert again.status_code == 200
        assert again.json()["id"] == first.json()["id"]
        assert first.json()["id"].startswith("sim_pay_")
        assert first.json()["status"] == "processing"
        assert first.json()["created_at"].endswith("Z")
        # Reusing a key for a different payment is refused, not answered with the old one.
        assert create(sim, amount=1).status_code == 409
        assert create(sim, key="key-2").status_code == 201
        assert len(sim.truth()["payments"]) == 2
        assert sim.stats()["max_creations_per_key"] == 1


def test_concurrent_creates_with_one_key_create_one_payment() -> None:
    with run_simulator(seed=1) as sim:
        codes: list[int] = []

        def attempt() -> None:
            codes.append(create(sim, key="race").status_code)

        threads = [threading.Thread(target=attempt) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(codes) == [200] * 7 + [201]
        assert len(sim.truth()["payments"]) == 1


def test_a_create_without_idempotency_key_or_with_a_bad_body_is_a_400() -> None:
    with run_simulator(seed=1) as sim:
        response = requests.post(f"{sim.url}/v1/payments", json=BODY, timeout=5)
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request"
        assert create(sim, amount="12").status_code == 400
        assert create(sim, currency="rupees").status_code == 400
        assert sim.truth()["payments"] == {}


def test_an_unknown_payment_is_a_404_with_a_json_error() -> None:
    with run_simulator(seed=1) as sim:
        response = fetch(sim, "sim_pay_nope")
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "not_found"


def test_the_api_key_is_required_when_configured() -> None:
    with run_simulator(seed=1, api_key="sk_sim") as sim:
        assert create(sim).status_code == 401
        response = requests.post(
            f"{sim.url}/v1/payments",
            json=BODY,
            headers={"Idempotency-Key": "k", "Authorization": "Bearer sk_sim"},
            timeout=5,
        )
        assert response.status_code == 201


def test_advancing_the_clock_settles_a_payment(session: HttpClient) -> None:
    with run_simulator(seed=1) as sim:
        payment = sim.create(final_status="failed", settle_after_s=60, requires_action=False)
        gateway = adapter(sim, session)
        assert gateway.fetch_payment(payment["id"]).status is Status.PENDING
        truth = sim.truth()["payments"][payment["id"]]
        assert (truth["status"], truth["final_status"], truth["settled_at"]) == (
            "processing",
            "failed",
            None,
        )
        sim.advance(61)
        polled = gateway.fetch_payment(payment["id"])
        assert (polled.status, polled.gateway_status) == (Status.FAILED, "failed")
        truth = sim.truth()["payments"][payment["id"]]
        assert truth["status"] == "failed"
        assert truth["settled_at"] == truth["final_at"]
        assert polled.occurred_at == datetime.fromisoformat(truth["final_at"])


def test_a_payment_can_pass_through_requires_action(session: HttpClient) -> None:
    with run_simulator(seed=1) as sim:
        payment = sim.create(final_status="succeeded", settle_after_s=100, requires_action=True)
        sim.advance(81)  # the action step falls between 20 % and 80 % of the settle time
        polled = adapter(sim, session).fetch_payment(payment["id"])
        assert (polled.status, polled.gateway_status) == (Status.PENDING, "requires_action")
        sim.advance(20)
        assert fetch(sim, payment["id"]).json()["status"] == "succeeded"


def test_the_adapter_creates_through_the_simulator_idempotently(
    session: HttpClient,
) -> None:
    with run_simulator(seed=1) as sim:
        gateway = adapter(sim, session)
        request = CreateRequest(4990, "INR", "order-9", idempotency_key="idem-9")
        first, again = gateway.create_payment(request), gateway.create_payment(request)
        assert first.gateway_payment_id == again.gateway_payment_id
        assert first.status is Status.PENDING
        assert len(sim.truth()["payments"]) == 1


# -- faults -----------------------------------------------------------------------------------


def test_5xx_faults_are_answered_and_logged() -> None:
    with run_simulator(seed=1, p_5xx=1.0) as sim:
        payment = sim.create()  # the control plane is never faulty
        codes = {fetch(sim, payment["id"]).status_code for _ in range(12)}
        assert codes <= {500, 502, 503}
        assert len(codes) > 1
        answers = [c["answer"] for c in sim.calls()["payments"][payment["id"]]]
        assert len(answers) == 12
        assert set(answers) == codes


def test_429_carries_retry_after_and_the_adapter_reads_it(session: HttpClient) -> None:
    with run_simulator(seed=1, p_429=1.0, retry_after=7) as sim:
        payment = sim.create()
        response = fetch(sim, payment["id"])
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "7"
        with pytest.raises(TransientError) as caught:
            adapter(sim, session).fetch_payment(payment["id"])
        assert caught.value.retry_after == 7


def test_a_hang_outlasts_the_client_timeout_but_the_create_still_happened() -> None:
    with run_simulator(seed=1, p_hang=1.0, hang_s=3) as sim:
        with pytest.raises(requests.ReadTimeout):
            create(sim, timeout=0.5)
        calls = sim.calls()
        assert [
            c["answer"] for c in calls["unattributed"] + sum(calls["payments"].values(), [])
        ] == ["hang"]
        # The client never saw the answer; its retry with the same key finds the payment.
        sim.set_faults(p_hang=0.0)
        retry = create(sim)
        assert retry.status_code == 200
        assert len(sim.truth()["payments"]) == 1


def test_a_scheduled_outage_answers_503_to_every_api_call() -> None:
    with run_simulator(seed=1, outage=["0:3600"]) as sim:
        payment = sim.create()
        assert create(sim).status_code == 503
        assert fetch(sim, payment["id"]).status_code == 503
        assert sim.stats()["in_outage"] is True
        sim.advance(3601)
        assert fetch(sim, payment["id"]).status_code == 200


def test_a_runtime_outage_starts_now_and_ends_in_simulator_time() -> None:
    with run_simulator(seed=1) as sim:
        payment = sim.create()
        assert fetch(sim, payment["id"]).status_code == 200
        sim.outage(30)
        assert fetch(sim, payment["id"]).status_code == 503
        sim.advance(31)
        assert fetch(sim, payment["id"]).status_code == 200


def test_latency_is_added_to_api_calls_only() -> None:
    with run_simulator(seed=1, latency_min=3, latency_max=3) as sim:
        payment = sim.create()
        assert fetch(sim, payment["id"]).elapsed.total_seconds() >= 3
        # Were the control plane delayed too, this would time out (3 s added > 1.5 s allowed).
        assert requests.get(f"{sim.url}/_sim/stats", timeout=1.5).status_code == 200


def test_every_api_call_is_counted_and_control_calls_are_not() -> None:
    with run_simulator(seed=1) as sim:
        created = create(sim).json()
        for _ in range(3):
            fetch(sim, created["id"])
        sim.truth()
        sim.stats()
        calls = sim.calls()
        kinds = [c["kind"] for c in calls["payments"][created["id"]]]
        assert kinds == ["create", "fetch", "fetch", "fetch"]
        assert calls["totals"]["all"] == 4
        assert calls["totals"]["by_answer"] == {"201": 1, "200": 3}
        for call in calls["payments"][created["id"]]:
            assert call["started_at"] <= call["ended_at"]


def test_runtime_faults_reject_unknown_fields() -> None:
    with run_simulator(seed=1) as sim:
        response = requests.post(f"{sim.url}/_sim/faults", json={"p_teapot": 1}, timeout=5)
        assert response.status_code == 400
        assert sim.set_faults(p_5xx=0.25)["p_5xx"] == 0.25


# -- webhooks ---------------------------------------------------------------------------------


def test_each_transition_is_delivered_signed(receiver: Receiver, session: HttpClient) -> None:
    with webhook_sim(receiver) as sim:
        payment = sim.create(final_status="succeeded", settle_after_s=5, requires_action=True)
        sim.advance(6)
        sim.flush()
        gateway = adapter(sim, session)
        now = sim_now(sim)
        reports = []
        for headers, body in receiver.received:
            event = gateway.parse_webhook(headers, body, now)
            assert event.gateway_payment_id == payment["id"]
            assert event.report is not None
            reports.append((event.event_type, event.report.status))
        assert reports == [
            ("payment.processing", Status.PENDING),
            ("payment.requires_action", Status.PENDING),
            ("payment.succeeded", Status.SUCCEEDED),
        ]
        log = sim.webhooks()
        assert [d["answer"] for d in log["deliveries"]] == [200, 200, 200]
        assert log["losses"] == []


def test_a_failed_delivery_is_retried_with_the_same_webhook_id(receiver: Receiver) -> None:
    receiver.answers = [500]
    with webhook_sim(receiver) as sim:
        sim.create(final_status="succeeded", settle_after_s=3600)
        sim.flush()
        sim.advance(2)  # the first retry waits one second of simulator time
        sim.flush()
        ids = [event_id for event_id, _ in receiver.events()]
        assert len(ids) == 2
        assert ids[0] == ids[1]
        attempts = [(d["attempt"], d["answer"]) for d in sim.webhooks()["deliveries"]]
        assert attempts == [(1, 500), (2, 200)]


def test_lost_webhooks_are_never_sent_but_recorded(receiver: Receiver) -> None:
    with webhook_sim(receiver, webhook_loss=1.0) as sim:
        payment = sim.create(final_status="canceled", settle_after_s=5, requires_action=False)
        sim.advance(6)
        sim.flush()
        assert receiver.received == []
        losses = sim.webhooks()["losses"]
        assert [(x["payment_id"], x["status"], x["reason"]) for x in losses] == [
            (payment["id"], "processing", "lost"),
            (payment["id"], "canceled", "lost"),
        ]


def test_duplicated_webhooks_arrive_twice_with_the_same_id(receiver: Receiver) -> None:
    with webhook_sim(receiver, webhook_duplicate=1.0) as sim:
        sim.create(final_status="succeeded", settle_after_s=5, requires_action=False)
        sim.advance(6)
        sim.flush()
        events = receiver.events()
        assert [status for _, status in events] == [
            "processing",
            "processing",
            "succeeded",
            "succeeded",
        ]
        assert events[0][0] == events[1][0] and events[2][0] == events[3][0]
        copies = [d["copy"] for d in sim.webhooks()["deliveries"]]
        assert copies == ["original", "duplicate", "original", "duplicate"]


def test_a_reordered_webhook_arrives_after_the_next_one(receiver: Receiver) -> None:
    with webhook_sim(receiver, webhook_reorder=1.0) as sim:
        sim.create(final_status="failed", settle_after_s=5, requires_action=False)
        sim.flush()
        assert receiver.received == []  # processing is held back until failed is sent
        sim.advance(6)
        sim.flush()
        assert [status for _, status in receiver.events()] == ["failed", "processing"]
        reordered = {d["status"]: d["reordered"] for d in sim.webhooks()["deliveries"]}
        assert reordered == {"failed": False, "processing": True}


def test_delayed_webhooks_wait_for_the_simulator_clock(receiver: Receiver) -> None:
    with webhook_sim(receiver, webhook_delay_max=600) as sim:
        sim.create(final_status="succeeded", settle_after_s=3600, requires_action=False)
        sim.advance(601)
        sim.flush()
        assert [status for _, status in receiver.events()] == ["processing"]


def test_no_webhooks_turns_delivery_off(receiver: Receiver) -> None:
    with webhook_sim(receiver, no_webhooks=True) as sim:
        sim.create(final_status="succeeded", settle_after_s=1)
        sim.advance(2)
        sim.flush()
        assert receiver.received == []
        assert sim.webhooks()["totals"]["events"] == 0
