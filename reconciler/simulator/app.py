"""The simulator's HTTP face: a faulty gateway API under `/v1` and a control plane under `/_sim`."""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from reconciler.simulator.config import SimConfig
from reconciler.simulator.state import Call, PaymentConflict, SimState, rfc3339
from reconciler.simulator.webhooks import Dispatcher

Answer = tuple[dict[str, Any], int]


@dataclass
class Simulator:
    """The state and the webhook dispatcher one app serves."""

    state: SimState
    dispatcher: Dispatcher


def create_app(config: SimConfig, *, start_dispatcher: bool = True) -> Flask:
    """Build the simulator app with fresh in-memory state."""
    app = Flask(__name__)
    state = SimState(config)
    dispatcher = Dispatcher(state)
    app.extensions["simulator"] = Simulator(state, dispatcher)
    app.register_blueprint(gateway_bp)
    app.register_blueprint(control_bp)
    if start_dispatcher:
        dispatcher.start()
    return app


def _sim() -> Simulator:
    sim: Simulator = current_app.extensions["simulator"]
    return sim


def _error(status: int, kind: str, message: str) -> Answer:
    return {"error": {"type": kind, "message": message}}, status


def _json_object() -> dict[str, Any] | None:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else None


# -- gateway API (faulty, counted) ------------------------------------------------------------

gateway_bp = Blueprint("gateway", __name__, url_prefix="/v1")


def _answer(call: Call, handle: Callable[[], Answer]) -> Response:
    """Run one gateway call through the drawn fault, then the handler, and log the answer."""
    state = _sim().state
    fault = state.draw_fault()
    if fault.latency_s > 0:
        time.sleep(fault.latency_s)
    if fault.answer is not None:
        messages = {"outage": "gateway unavailable", "rate_limited": "too many requests"}
        body, status = _error(
            fault.answer, fault.reason, messages.get(fault.reason, "internal error")
        )
        state.end_call(call, status)
        response = jsonify(body)
        response.status_code = status
        if fault.retry_after_s is not None:
            response.headers["Retry-After"] = str(fault.retry_after_s)
        return response
    api_key = state.config.api_key
    if api_key is not None and not hmac.compare_digest(
        request.headers.get("Authorization", "").encode(), f"Bearer {api_key}".encode()
    ):
        body, status = _error(401, "unauthorized", "missing or wrong API key")
    else:
        body, status = handle()
    if fault.hang_s is not None:
        # The work is done (a create really happened), but the answer comes too late.
        with state.lock:
            call.answer = "hang"
        time.sleep(fault.hang_s)
    state.end_call(call, status)
    response = jsonify(body)
    response.status_code = status
    return response


@gateway_bp.post("/payments")
def create_payment() -> Response:
    """Create a payment; the same Idempotency-Key returns the same payment."""
    sim = _sim()
    key = request.headers.get("Idempotency-Key") or None
    call = sim.state.start_call("create", idempotency_key=key)

    def handle() -> Answer:
        if key is None:
            return _error(400, "invalid_request", "the Idempotency-Key header is required")
        body = _json_object()
        if body is None:
            return _error(400, "invalid_request", "the body must be a JSON object")
        amount, currency, reference = (body.get(k) for k in ("amount", "currency", "reference"))
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            return _error(400, "invalid_request", "amount must be a positive integer")
        if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
            return _error(400, "invalid_request", "currency must be a 3-letter ISO 4217 code")
        if not isinstance(reference, str) or not reference:
            return _error(400, "invalid_request", "reference must be a non-empty string")
        try:
            payment, created = sim.state.create_payment(
                amount=amount, currency=currency.upper(), reference=reference, idempotency_key=key
            )
        except PaymentConflict as exc:
            return _error(409, "idempotency_conflict", str(exc))
        with sim.state.lock:
            call.payment_id = payment.id
        if created:
            sim.dispatcher.schedule(payment)
        answer = sim.state.payment_json(payment.id)
        assert answer is not None
        return answer, 201 if created else 200

    return _answer(call, handle)


@gateway_bp.get("/payments/<payment_id>")
def fetch_payment(payment_id: str) -> Response:
    """Show one payment as of the simulator clock."""
    sim = _sim()
    call = sim.state.start_call("fetch", payment_id=payment_id)

    def handle() -> Answer:
        payment = sim.state.payment_json(payment_id)
        if payment is None:
            return _error(404, "not_found", f"no such payment: {payment_id}")
        return payment, 200

    return _answer(call, handle)


# -- control plane (never faulty, never counted) ----------------------------------------------

control_bp = Blueprint("control", __name__, url_prefix="/_sim")


def _number(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


@control_bp.get("/truth")
def truth() -> Answer:
    """Show every payment's current and final status."""
    return _sim().state.truth(), 200


@control_bp.get("/calls")
def calls() -> Answer:
    """Show every gateway API call, per payment, with totals."""
    return _sim().state.calls_json(), 200


@control_bp.get("/webhooks")
def webhooks() -> Answer:
    """Show every webhook delivery attempt and every event lost."""
    return _sim().dispatcher.as_json(), 200


@control_bp.post("/payments")
def seed_payment() -> Answer:
    """Create a payment without faults, optionally fixing its fate."""
    sim = _sim()
    body = _json_object()
    if body is None:
        body = {}
    final_status = body.get("final_status")
    requires_action = body.get("requires_action")
    try:
        payment, created = sim.state.create_payment(
            amount=int(body.get("amount", 1000)),
            currency=str(body.get("currency", "USD")),
            reference=str(body.get("reference") or f"sim-{secrets.token_hex(6)}"),
            idempotency_key=body.get("idempotency_key"),
            final_status=final_status if isinstance(final_status, str) else None,
            settle_after_s=_number(body, "settle_after_s"),
            requires_action=requires_action if isinstance(requires_action, bool) else None,
        )
    except (ValueError, TypeError, PaymentConflict) as exc:
        return _error(400, "invalid_request", str(exc))
    if created:
        sim.dispatcher.schedule(payment)
    answer = sim.state.payment_json(payment.id)
    assert answer is not None
    return answer, 201 if created else 200


@control_bp.get("/clock")
def get_clock() -> Answer:
    """Show the simulator clock."""
    clock = _sim().state.clock
    return {"now": rfc3339(clock.now()), "offset_s": clock.offset_s}, 200


@control_bp.post("/clock")
def advance_clock() -> Answer:
    """Move the simulator clock forward by `advance_s` seconds."""
    sim = _sim()
    seconds = _number(_json_object() or {}, "advance_s")
    if seconds is None or seconds < 0:
        return _error(400, "invalid_request", "advance_s must be a number >= 0")
    now = sim.state.clock.advance(seconds)
    sim.dispatcher.wake()
    return {"now": rfc3339(now), "offset_s": sim.state.clock.offset_s}, 200


@control_bp.get("/faults")
def get_faults() -> Answer:
    """Show the runtime settings."""
    return _sim().state.config.faults_json(), 200


@control_bp.post("/faults")
def set_faults() -> Answer:
    """Replace the given runtime settings (same names as `SimConfig`); others keep their value."""
    sim = _sim()
    body = _json_object()
    if body is None:
        return _error(400, "invalid_request", "the body must be a JSON object")
    with sim.state.lock:
        try:
            sim.state.config = sim.state.config.updated(body)
        except (ValueError, TypeError) as exc:
            return _error(400, "invalid_request", str(exc))
        return sim.state.config.faults_json(), 200


@control_bp.post("/outage")
def outage() -> Answer:
    """Start an outage now, in simulator time, for `duration_s` seconds."""
    seconds = _number(_json_object() or {}, "duration_s")
    if seconds is None or seconds <= 0:
        return _error(400, "invalid_request", "duration_s must be a number > 0")
    start, end = _sim().state.start_outage(seconds)
    return {"start": rfc3339(start), "end": rfc3339(end)}, 200


@control_bp.post("/flush")
def flush() -> Answer:
    """Deliver every due webhook now and wait until none is due."""
    sim = _sim()
    timeout = _number(_json_object() or {}, "timeout_s") or 30.0
    done = sim.dispatcher.flush(timeout)
    status = 200 if done else 504
    return {"flushed": done, "pending": sim.dispatcher.as_json()["pending"]}, status


@control_bp.get("/stats")
def stats() -> Answer:
    """Show counters: payments by status, calls, webhooks."""
    sim = _sim()
    out = sim.state.stats()
    out["webhooks"] = sim.dispatcher.as_json()["totals"]
    return out, 200
