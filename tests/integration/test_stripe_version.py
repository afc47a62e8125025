"""Every call to Stripe carries the pinned `Stripe-Version`, so answers keep one shape."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.fakes.stripe_server import SECRET_KEY, StripeFake
from werkzeug.wrappers import Request, Response

from reconciler.adapters.gateways.base import CreateRequest
from reconciler.adapters.gateways.stripe import StripeGateway
from reconciler.adapters.gateways.transport import HttpClient
from reconciler.config import STRIPE_API_VERSION, Settings


class VersionRecordingStripe(StripeFake):
    """The loopback Stripe, noting the `Stripe-Version` header of every request."""

    def __init__(self) -> None:
        super().__init__()
        self.versions: list[str | None] = []

    def handle(self, request: Request) -> Response:
        self.versions.append(request.headers.get("Stripe-Version"))
        return super().handle(request)


@pytest.fixture
def fake() -> Iterator[VersionRecordingStripe]:
    server = VersionRecordingStripe()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("env", "sent"),
    [
        ({}, STRIPE_API_VERSION),
        ({"RECONCILER_STRIPE_API_VERSION": "2025-01-27.acacia"}, "2025-01-27.acacia"),
    ],
)
def test_creates_and_polls_send_the_configured_stripe_version(
    fake: VersionRecordingStripe, env: dict[str, str], sent: str
) -> None:
    settings = Settings.from_env(
        {**env, "RECONCILER_STRIPE_API_BASE": fake.url, "RECONCILER_STRIPE_API_KEY": SECRET_KEY}
    )
    with HttpClient() as http:
        gateway = StripeGateway(
            settings.gateway("stripe"), session=http, timeout=(2, 5), create_timeout=(2, 5)
        )
        created = gateway.create_payment(
            CreateRequest(
                amount=4990, currency="USD", merchant_reference="order-1", idempotency_key="k1"
            )
        )
        gateway.fetch_payment(created.gateway_payment_id)

    assert fake.versions == [sent, sent]
