"""Request and response shapes of gateway accounts (admin and merchant views)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, RootModel, Strict, StringConstraints, model_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from reconciler.entrypoints.schemas import ResourceId, Row, Shape, Timestamp

# A secret as given: printable, no commas (several secrets are comma-separated in config).
Secret = Annotated[
    str,
    Strict(),
    StringConstraints(min_length=1, max_length=500, pattern=r"^[\x21-\x2b\x2d-\x7e]+$"),
]
AccountStatus = Literal["active", "disabled"]


class StripeCredentials(Shape):
    """A Stripe account's secret key (`sk_…`, or a restricted `rk_…`)."""

    api_key: Secret


class RazorpayCredentials(Shape):
    """A Razorpay account's key id and key secret."""

    key_id: Secret
    key_secret: Secret


class NoCredentials(Shape):
    """The simulator needs none."""


Credentials = StripeCredentials | RazorpayCredentials | NoCredentials


class StripeAccount(Shape):
    merchant_id: ResourceId
    gateway: Literal["stripe"]
    credentials: StripeCredentials
    webhook_secret: Secret = Field(description="The endpoint's signing secret, `whsec_…`")


class RazorpayAccount(Shape):
    merchant_id: ResourceId
    gateway: Literal["razorpay"]
    credentials: RazorpayCredentials
    webhook_secret: Secret = Field(description="The secret set on the Razorpay webhook")


class SimulatorAccount(Shape):
    merchant_id: ResourceId
    gateway: Literal["simulator"]
    credentials: NoCredentials
    webhook_secret: Secret = Field(description="The simulator's `whsec_…` secret")


class AccountRequest(
    RootModel[
        Annotated[
            StripeAccount | RazorpayAccount | SimulatorAccount, Field(discriminator="gateway")
        ]
    ]
):
    """The body of `POST /admin/gateway_accounts`: the credentials each gateway needs."""


class AccountRotation(Shape):
    """The body of `POST /admin/gateway_accounts/{id}/rotate`: what to replace (one or both)."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [{"required": ["credentials"]}, {"required": ["webhook_secret"]}]
        }
    )

    # Omitted, not null: the document says so (null is refused like an empty body).
    credentials: Credentials | SkipJsonSchema[None] = Field(
        None, description="The account's gateway's credentials, as when it was added"
    )
    webhook_secret: Secret | SkipJsonSchema[None] = Field(
        None, description="The previous secret keeps verifying for 24 h"
    )

    @model_validator(mode="after")
    def _something_to_replace(self) -> AccountRotation:
        if self.credentials is None and self.webhook_secret is None:
            raise PydanticCustomError("missing", "give credentials, webhook_secret or both")
        return self


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
