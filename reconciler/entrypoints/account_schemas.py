"""Request and response shapes of gateway accounts (admin and merchant views)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, Strict, StringConstraints

from reconciler.entrypoints.schemas import Gateway, ResourceId, Row, Shape, Timestamp

# A secret as given: printable, no commas (several secrets are comma-separated in config).
Secret = Annotated[
    str,
    Strict(),
    StringConstraints(min_length=1, max_length=500, pattern=r"^[\x21-\x2b\x2d-\x7e]+$"),
]
AccountStatus = Literal["active", "disabled"]


class Credentials(Shape):
    """`{api_key}` for Stripe, `{key_id, key_secret}` for Razorpay, `{}` for the simulator."""

    api_key: Secret | None = None
    key_id: Secret | None = None
    key_secret: Secret | None = None


class AccountRequest(Shape):
    """The body of `POST /admin/gateway_accounts`."""

    merchant_id: ResourceId
    gateway: Gateway
    credentials: Credentials
    webhook_secret: Secret


class AccountRotation(Shape):
    """The body of `POST /admin/gateway_accounts/{id}/rotate`: what to replace."""

    credentials: Credentials | None = None
    webhook_secret: Secret | None = Field(
        None, description="The previous secret keeps verifying for 24 h"
    )


class AccountFilter(Shape):
    """The query of `GET /admin/gateway_accounts`."""

    merchant_id: str = Field("", description="Only this merchant's accounts; empty means all")


class Account(Row):
    """A gateway account as an operator sees it (never its secrets)."""

    id: str
    merchant_id: str
    gateway: str
    status: AccountStatus
    webhook_path: str = Field(description="Where the gateway sends this account's webhooks")
    created_at: Timestamp


class AccountList(Shape):
    data: list[Account]


class MerchantAccount(Row):
    """A gateway account as its merchant sees it."""

    id: str
    gateway: str
    status: AccountStatus
    webhook_path: str


class MerchantAccountList(Shape):
    data: list[MerchantAccount]
