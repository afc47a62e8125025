"""`reconciler serve` as a merchant meets it: a real server, a real flaky-gateway simulator.

The service runs as its own process (migrate, gunicorn, in-process sweep) on a temp SQLite
file; the simulator sends it signed webhooks, or none at all. Payments are driven over HTTP
and must end where the simulator's ground truth says they ended.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from support.app import SIM_SECRET
from support.simulator import Simulator, run_simulator

from e2e.conftest import E2E_POLICY, Service, run_service, wait_until
from reconciler.domain.policy import max_polls

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

CONVERGE_WITHIN_S = 30.0
TERMINAL = {"succeeded", "failed", "canceled"}


def payment_body(reference: str, **extra: Any) -> dict[str, Any]:
    return {
        "merchant_reference": reference,
        "gateway": "simulator",
        "amount": 49900,
        "currency": "INR",
        **extra,
    }


def create_payments(service: Service, sim: Simulator, headers: dict[str, str]) -> list[str]:
    """Register three payments created through the API and three that already exist."""
    ids = []
    for n in range(3):
        response = service.post("/v1/payments", json=payment_body(f"new-{n}"), headers=headers)
        assert response.status_code == 201, response.text
        assert response.headers["Location"] == f"/v1/payments/{response.json()['id']}"
        assert response.json()["gateway_payment_id"], "created at the simulator inline"
        ids.append(response.json()["id"])
    for n in range(3):
        existing = sim.create(amount=49900, currency="INR", reference=f"ext-{n}")
        body = payment_body(f"ext-{n}", gateway_payment_id=existing["id"])
        response = service.post("/v1/payments", json=body, headers=headers)
        assert response.status_code == 201, response.text
        assert response.json()["gateway_payment_id"] == existing["id"]
        ids.append(response.json()["id"])
    return ids


def sample(metrics: str, name: str) -> float:
    """Read one sample (`name{labels}`) from Prometheus text; 0 when it is absent."""
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_for_ground_truth(
    service: Service, sim: Simulator, headers: dict[str, str], ids: list[str]
) -> tuple[float, dict[str, dict[str, Any]]]:
    """Wait until every payment shows the simulator's final status; return the time and rows."""
    rows: dict[str, dict[str, Any]] = {}

    def converged() -> bool:
        truth = sim.truth()["payments"]
        for pid in ids:
            rows[pid] = service.get(f"/v1/payments/{pid}", headers=headers).json()
        return all(
            truth[row["gateway_payment_id"]]["settled_at"] is not None
            and row["status"] == truth[row["gateway_payment_id"]]["final_status"]
            for row in rows.values()
        )

    try:
        took = wait_until(converged, CONVERGE_WITHIN_S, "every payment reaching ground truth")
    except AssertionError:
        summary = {pid: (r["status"], r["sync"]) for pid, r in rows.items()}
        raise AssertionError(f"not converged: {summary}\n{service.logs()}") from None
    return took, rows


def test_a_merchant_drives_the_service_and_every_payment_reaches_ground_truth(
    tmp_path: Path, service_port: int
) -> None:
    started = time.monotonic()
    with (
        run_simulator(
            seed=11,
            settle_min=1,
            settle_max=4,
            webhook_url=f"http://127.0.0.1:{service_port}/webhooks/simulator",
            webhook_secret=SIM_SECRET,
        ) as sim,
        run_service(
            tmp_path, port=service_port, simulator_url=sim.url, webhook_secret=SIM_SECRET
        ) as service,
    ):
        acme = service.create_merchant("acme")
        globex = service.create_merchant("globex")
        ids = create_payments(service, sim, acme)

        # Read one back, list them, page through them.
        first = service.get(f"/v1/payments/{ids[0]}", headers=acme)
        assert first.status_code == 200
        assert first.json()["merchant_reference"] == "new-0"
        listed = service.get("/v1/payments?limit=4", headers=acme).json()
        assert [p["id"] for p in listed["data"]] == ids[::-1][:4]  # newest first
        rest = service.get(
            f"/v1/payments?limit=4&cursor={listed['next_cursor']}", headers=acme
        ).json()
        assert [p["id"] for p in rest["data"]] == ids[::-1][4:]
        assert rest["next_cursor"] is None

        # Idempotency: the same body replays, a different one conflicts.
        again = service.post("/v1/payments", json=payment_body("new-0"), headers=acme)
        assert (again.status_code, again.json()["id"]) == (200, ids[0])
        clash = service.post("/v1/payments", json=payment_body("new-0", amount=1), headers=acme)
        assert clash.status_code == 409
        assert clash.headers["Content-Type"] == "application/problem+json"

        # Another merchant sees none of it.
        assert service.get(f"/v1/payments/{ids[0]}", headers=globex).status_code == 404
        assert service.get(f"/v1/payments/{ids[0]}/events", headers=globex).status_code == 404
        assert service.get("/v1/payments", headers=globex).json()["data"] == []

        took, rows = wait_for_ground_truth(service, sim, acme, ids)
        for pid, row in rows.items():
            assert row["status"] in TERMINAL
            assert row["sync"]["state"] == "settled", row
            timeline = service.get(f"/v1/payments/{pid}/events", headers=acme).json()["data"]
            applied = [e for e in timeline if e["to_status"] == row["status"]]
            assert applied, f"no event leading to {row['status']}: {timeline}"

        wait_until(lambda: service.get("/readyz").status_code == 200, 10, "/readyz turning 200")
        metrics = service.get("/metrics")
        assert metrics.status_code == 200
        assert "reconciler_polls_total" in metrics.text
        assert "reconciler_payments" in metrics.text
        # Signed webhooks reached the service and were applied (not just refused as unsigned).
        applied = sample(
            metrics.text, 'reconciler_webhooks_total{gateway="simulator",result="applied"}'
        )
        assert applied > 0, metrics.text
        assert service.get("/openapi.json").json()["openapi"].startswith("3.")

        stderr = service.stderr()
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, "serve logged nothing"
    for line in lines:
        entry = json.loads(line)  # every line on stderr is one JSON object
        assert {"ts", "level", "msg"} <= set(entry), line
    print(
        f"\ne2e serve: {len(ids)} payments converged {took:.1f} s after the last request; "
        f"test took {time.monotonic() - started:.1f} s"
    )


def test_polling_alone_converges_within_the_schedules_poll_budget(
    tmp_path: Path, service_port: int
) -> None:
    started = time.monotonic()
    with (
        run_simulator(seed=12, settle_min=1, settle_max=4, no_webhooks=True) as sim,
        run_service(
            tmp_path, port=service_port, simulator_url=sim.url, webhook_secret=SIM_SECRET
        ) as service,
    ):
        acme = service.create_merchant("acme")
        ids = create_payments(service, sim, acme)
        took, rows = wait_for_ground_truth(service, sim, acme, ids)
        assert {row["status_source"] for row in rows.values()} <= {"poll", "api"}
        calls = sim.calls()["payments"]
    budget = max_polls(E2E_POLICY)
    fetches = {
        row["gateway_payment_id"]: sum(
            1 for c in calls[row["gateway_payment_id"]] if c["kind"] == "fetch"
        )
        for row in rows.values()
    }
    assert all(count <= budget for count in fetches.values()), (fetches, budget)
    # Created at the gateway, or fetched: every payment settled through the gateway's API.
    assert sum(fetches.values()) >= 3, fetches
    print(
        f"\ne2e polling only: converged in {took:.1f} s, fetches per payment "
        f"{sorted(fetches.values())} (budget {budget}); "
        f"test took {time.monotonic() - started:.1f} s"
    )


def test_a_restarted_service_keeps_its_payments_and_their_idempotency(
    tmp_path: Path, service_port: int
) -> None:
    # The database outlives the process: a payment registered before a restart is there after.
    with run_simulator(seed=13, settle_min=0, settle_max=0, no_webhooks=True) as sim:
        with run_service(
            tmp_path, port=service_port, simulator_url=sim.url, webhook_secret=SIM_SECRET
        ) as service:
            acme = service.create_merchant("acme")
            reference = f"restart-{uuid.uuid4().hex[:8]}"
            pid = service.post("/v1/payments", json=payment_body(reference), headers=acme).json()[
                "id"
            ]
        with run_service(
            tmp_path, port=service_port, simulator_url=sim.url, webhook_secret=SIM_SECRET
        ) as service:
            again = service.post("/v1/payments", json=payment_body(reference), headers=acme)
            assert (again.status_code, again.json()["id"]) == (200, pid)
