"""A gateway that lies (another payment's answer, garbage, unknown words) changes nothing."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from support.app import make_settings
from support.clock import FakeClock
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from reconciler.adapters.models import Payment
from reconciler.bootstrap import Context, bootstrap
from reconciler.services.merchants import create_merchant
from reconciler.services.payments import PaymentRequest, register_payment
from reconciler.services.sweep import Sweeper

ANSWERS: dict[str, Any] = {
    # Asked about sim_pay_a, it answers about another payment.
    "sim_pay_a": {
        "id": "sim_pay_other",
        "status": "succeeded",
        "updated_at": "2026-11-28T10:00:00Z",
    },
    # Not JSON at all.
    "sim_pay_b": "<html>502 Bad Gateway</html>",
    # A status word nobody documented.
    "sim_pay_c": {"id": "sim_pay_c", "status": "teleported", "updated_at": "2026-11-28T10:00:00Z"},
}


@pytest.fixture
def liar() -> Iterator[str]:
    @Request.application  # type: ignore[arg-type]
    def app(request: Request) -> Response:
        answer = ANSWERS.get(request.path.rsplit("/", 1)[-1], {"error": {"type": "not_found"}})
        if isinstance(answer, str):
            return Response(answer, status=200, content_type="text/html")
        return Response(json.dumps(answer), status=200, content_type="application/json")

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def liar_ctx(db_url: str, liar: str, clock: FakeClock) -> Iterator[Context]:
    ctx = bootstrap(make_settings(db_url, liar), clock=clock, rand=random.Random(5).random)
    yield ctx
    ctx.close()


def test_a_lying_gateway_moves_no_status(liar_ctx: Context, clock: FakeClock) -> None:
    merchant, _ = create_merchant(liar_ctx, "acme")
    ids = {
        gid: register_payment(liar_ctx, merchant, PaymentRequest(gid, "simulator", 5, "EUR", gid))[
            0
        ].id
        for gid in ANSWERS
    }
    clock.advance(30)
    sweeper = Sweeper(liar_ctx)
    try:
        report = sweeper.sweep_once(clock.now)
    finally:
        sweeper.close()
    assert report.polled == 3
    with liar_ctx.sessions() as session:
        rows = {gid: session.get_one(Payment, pid) for gid, pid in ids.items()}
    assert {row.status for row in rows.values()} == {"pending"}
    assert "answered about sim_pay_other" in (rows["sim_pay_a"].last_error or "")
    assert "non-JSON" in (rows["sim_pay_b"].last_error or "")
    assert rows["sim_pay_c"].gateway_status == "teleported"  # kept, still polled
    assert all(row.next_poll_at is not None for row in rows.values())
