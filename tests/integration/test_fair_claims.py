"""The delivery claim takes merchants in turn and keeps each under its cap, on both databases."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
from support.app import make_settings
from support.clock import FakeClock
from support.shop import Shop
from support.simulator import Simulator

from reconciler.adapters import repository
from reconciler.bootstrap import Context, bootstrap


@pytest.fixture
def fair_ctx(db_url: str, simulator: Simulator, clock: FakeClock) -> Iterator[Context]:
    settings = make_settings(db_url, simulator.url, notify_allow_private=1)
    context = bootstrap(settings, clock=clock, rand=random.Random(2).random)
    yield context
    context.close()


def changes(shop: Shop, count: int, clock: FakeClock) -> None:
    """Register a payment and have it succeed `count` times: one delivery each, a second apart."""
    for n in range(count):
        _, gid = shop.payment(f"p{n}")
        shop.report(gid, "succeeded")
        clock.advance(1)


def owners(ctx: Context, claimed: list[object]) -> list[str]:
    with ctx.read() as session:
        return [
            repository.endpoint_owner(session, row._mapping["endpoint_id"]).name  # type: ignore[attr-defined, union-attr]
            for row in claimed
        ]


def test_merchants_are_claimed_in_turn_whatever_one_merchants_backlog(
    fair_ctx: Context, simulator: Simulator, clock: FakeClock
) -> None:
    mallory, acme = Shop(fair_ctx, simulator, "mallory"), Shop(fair_ctx, simulator, "acme")
    mallory.endpoint("http://127.0.0.1:9/m")
    acme.endpoint("http://127.0.0.1:9/a")
    changes(mallory, 8, clock)  # due first: an older backlog
    changes(acme, 2, clock)
    queue = replace(repository.DELIVERIES, per_merchant_cap=10)
    with fair_ctx.sessions.begin() as session:
        claimed = repository.claim_due(
            session,
            queue,
            now=clock.now,
            limit=4,
            owner="sweeper-1",
            lease_until=clock.now + timedelta(seconds=60),
        )
    # Oldest due first would give mallory all four slots; in turn, each merchant gets two.
    assert Counter(owners(fair_ctx, claimed)) == Counter({"mallory": 2, "acme": 2})


def test_a_merchant_at_its_cap_of_leased_deliveries_gets_no_more(
    fair_ctx: Context, simulator: Simulator, clock: FakeClock
) -> None:
    mallory, acme = Shop(fair_ctx, simulator, "mallory"), Shop(fair_ctx, simulator, "acme")
    mallory.endpoint("http://127.0.0.1:9/m")
    acme.endpoint("http://127.0.0.1:9/a")
    changes(mallory, 6, clock)
    queue = replace(repository.DELIVERIES, per_merchant_cap=3)
    lease_until = clock.now + timedelta(seconds=60)

    def claim(owner: str) -> list[str]:
        with fair_ctx.sessions.begin() as session:
            rows = repository.claim_due(
                session, queue, now=clock.now, limit=10, owner=owner, lease_until=lease_until
            )
        return owners(fair_ctx, rows)

    assert claim("sweeper-1") == ["mallory"] * 3
    # Another sweeper (a replica) sees the leases: mallory is at its cap there too.
    assert claim("sweeper-2") == []
    changes(acme, 1, clock)
    assert claim("sweeper-2") == ["acme"]
