"""Rotating a merchant's API key: the old key keeps working for a grace period, then stops."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from support.app import MerchantAuth
from support.clock import FakeClock

from reconciler.bootstrap import Context
from reconciler.services.errors import NotFound, ValidationFailed
from reconciler.services.merchants import (
    ROTATION_GRACE,
    create_merchant,
    list_merchants,
    rotate_key,
)


def status_with(client: FlaskClient, api_key: str) -> int:
    return client.get("/v1/payments", headers={"Authorization": f"Bearer {api_key}"}).status_code


def test_the_old_key_works_until_the_grace_period_ends_and_the_new_one_at_once(
    client: FlaskClient, merchant: MerchantAuth, ctx: Context, clock: FakeClock
) -> None:
    rotated, new_key = rotate_key(ctx, "acme")

    assert rotated.id == merchant.id
    assert status_with(client, new_key) == 200
    assert status_with(client, merchant.api_key) == 200
    clock.advance(ROTATION_GRACE.total_seconds() - 1)
    assert status_with(client, merchant.api_key) == 200
    clock.advance(1)
    assert status_with(client, merchant.api_key) == 401
    assert status_with(client, new_key) == 200


def test_a_zero_grace_revokes_the_old_key_at_once(
    client: FlaskClient, merchant: MerchantAuth, ctx: Context
) -> None:
    _, new_key = rotate_key(ctx, merchant.id, grace=timedelta(0))

    assert status_with(client, merchant.api_key) == 401
    assert status_with(client, new_key) == 200


def test_a_second_rotation_ends_the_first_keys_grace(
    client: FlaskClient, merchant: MerchantAuth, ctx: Context
) -> None:
    _, second = rotate_key(ctx, "acme")
    _, third = rotate_key(ctx, "acme")

    assert status_with(client, merchant.api_key) == 401
    assert status_with(client, second) == 200
    assert status_with(client, third) == 200


@pytest.mark.parametrize(
    ("names", "target", "error"),
    [
        (["acme"], "globex", NotFound),
        # Names are not unique: an ambiguous one asks for the id.
        (["acme", "acme"], "acme", ValidationFailed),
    ],
)
def test_rotating_an_unknown_or_ambiguous_merchant_is_refused(
    ctx: Context, names: list[str], target: str, error: type[Exception]
) -> None:
    for name in names:
        create_merchant(ctx, name)

    with pytest.raises(error):
        rotate_key(ctx, target)


def test_merchants_are_listed_oldest_first(ctx: Context, clock: FakeClock) -> None:
    create_merchant(ctx, "acme")
    clock.advance(1)
    create_merchant(ctx, "globex")

    assert [m.name for m in list_merchants(ctx)] == ["acme", "globex"]
