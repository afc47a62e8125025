"""Rotating a merchant's API key: the old key keeps working for a grace period, then stops."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import event
from support.app import MerchantAuth
from support.clock import FakeClock

from reconciler.bootstrap import Context, bootstrap
from reconciler.services import key_cache
from reconciler.services.errors import NotFound, ValidationFailed
from reconciler.services.merchants import (
    ROTATION_GRACE,
    authenticate,
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


def statements(ctx: Context) -> list[str]:
    """Record every query of the merchants table `ctx` sends from now on."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM merchants" in statement:
            seen.append(statement)

    event.listen(ctx.engine, "before_cursor_execute", record)
    return seen


@pytest.fixture
def other_process(ctx: Context, clock: FakeClock) -> Iterator[Context]:
    """A second context on the same database, as `reconciler merchant rotate-key` has."""
    other = bootstrap(ctx.settings, gateways={}, clock=clock)
    yield other
    other.close()


def test_an_accepted_key_is_not_looked_up_again_within_the_ttl(
    ctx: Context, merchant: MerchantAuth, clock: FakeClock
) -> None:
    assert authenticate(ctx, merchant.api_key) is not None
    seen = statements(ctx)

    clock.advance(key_cache.TTL.total_seconds() - 0.5)
    assert authenticate(ctx, merchant.api_key) is not None
    assert seen == []
    clock.advance(0.5)
    assert authenticate(ctx, merchant.api_key) is not None
    assert len(seen) == 1


def test_an_unknown_key_is_looked_up_every_time_so_a_new_key_works_at_once(
    ctx: Context, merchant: MerchantAuth, other_process: Context
) -> None:
    assert authenticate(ctx, "rk_not-a-key") is None
    seen = statements(ctx)
    assert authenticate(ctx, "rk_not-a-key") is None
    assert len(seen) == 1

    _, new_key = rotate_key(other_process, "acme")
    assert authenticate(ctx, new_key) is not None


def test_a_key_revoked_by_another_process_is_refused_once_the_ttl_passes(
    client: FlaskClient, merchant: MerchantAuth, other_process: Context, clock: FakeClock
) -> None:
    assert status_with(client, merchant.api_key) == 200
    rotate_key(other_process, "acme", grace=timedelta(0))

    # Still cached here: this process did not see the revocation.
    assert status_with(client, merchant.api_key) == 200
    clock.advance(key_cache.TTL.total_seconds())
    assert status_with(client, merchant.api_key) == 401


def test_a_grace_period_ends_to_the_instant_even_when_the_old_key_is_cached(
    client: FlaskClient, merchant: MerchantAuth, other_process: Context, clock: FakeClock
) -> None:
    grace = timedelta(seconds=1)
    rotate_key(other_process, "acme", grace=grace)
    clock.advance(0.5)
    assert status_with(client, merchant.api_key) == 200  # cached until the grace ends

    clock.advance(0.5)
    assert status_with(client, merchant.api_key) == 401


def test_a_lookup_that_raced_a_rotation_does_not_cache_its_stale_answer(
    ctx: Context, merchant: MerchantAuth, clock: FakeClock
) -> None:
    found = authenticate(ctx, merchant.api_key)
    assert found is not None
    ctx.keys.clear()
    before = ctx.keys.generation - 1  # a lookup that read the row before that clear

    ctx.keys.put("some-hash", found, clock(), before)
    assert ctx.keys.get("some-hash", clock()) is None
