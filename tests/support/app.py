"""Wire the service for a test: settings, a merchant's credentials, a registered payment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask.testing import FlaskClient

from reconciler.config import Settings

SIM_SECRET = "whsec_" + "dGVzdC1zZWNyZXQtZm9yLXRoZS1zaW11bGF0b3I="  # test-only
SECRETS_KEY = (
    "KYVN7Vt8h8AriF-ED9yuqre-FjMwJGLYScptr8L1AFM="  # test-only Fernet key that seals stored secrets
)


def make_settings(db_url: str, simulator_url: str | None = None, **overrides: Any) -> Settings:
    """Build settings the way the service reads them, from RECONCILER_* variables."""
    env = {
        "RECONCILER_DATABASE_URL": db_url,
        "RECONCILER_SIMULATOR_WEBHOOK_SECRET": SIM_SECRET,
        "RECONCILER_SECRETS_KEY": SECRETS_KEY,
        "RECONCILER_GATEWAY_READ_TIMEOUT_S": "2",
        "RECONCILER_GATEWAY_CREATE_TIMEOUT_S": "2",
        "RECONCILER_SWEEP_CONCURRENCY": "4",
    }
    if simulator_url:
        env["RECONCILER_SIMULATOR_URL"] = simulator_url
    env.update({f"RECONCILER_{k.upper()}": str(v) for k, v in overrides.items()})
    return Settings.from_env(env)


@dataclass
class MerchantAuth:
    """A merchant's id and API key, with the headers that present the key."""

    id: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def register_payment(
    client: FlaskClient,
    merchant: MerchantAuth,
    gateway_payment_id: str,
    *,
    reference: str | None = None,
    amount: int = 1000,
    currency: str = "EUR",
) -> str:
    """Register a simulator payment through the API (201 expected); return our payment id."""
    response = client.post(
        "/v1/payments",
        json={
            "merchant_reference": reference or gateway_payment_id,
            "gateway": "simulator",
            "amount": amount,
            "currency": currency,
            "gateway_payment_id": gateway_payment_id,
        },
        headers=merchant.headers,
    )
    assert response.status_code == 201, response.json
    payment_id: str = response.json["id"]
    return payment_id
