"""Simulator webhooks for tests: a body, and a delivery signed the Standard Webhooks way."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

from flask.testing import FlaskClient

from support.app import SIM_SECRET
from support.clock import FakeClock


def event(gid: str, status: str, at: datetime) -> bytes:
    """A simulator event: payment `gid` reached `status` at `at` (its event time)."""
    stamp = at.isoformat().replace("+00:00", "Z")
    data = {"id": gid, "status": status, "amount": 1000, "currency": "EUR", "updated_at": stamp}
    return json.dumps({"type": f"payment.{status}", "timestamp": stamp, "data": data}).encode()


def deliver(
    client: FlaskClient, clock: FakeClock, msg_id: str, body: bytes, secret: str = SIM_SECRET
) -> Any:
    """POST a webhook signed here, independently of the adapter, at the clock's time."""
    ts = int(clock.now.timestamp())
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
        "Content-Type": "application/json",
    }
    return client.post("/webhooks/simulator", data=body, headers=headers)
