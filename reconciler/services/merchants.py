"""Merchants and their API keys (stored as SHA-256 hashes, shown once, rotated with grace)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy.orm import Session

from reconciler.adapters import repository
from reconciler.adapters.models import Merchant
from reconciler.services.context import Context
from reconciler.services.errors import NotFound, ValidationFailed
from reconciler.services.ids import new_id

# How long a rotated-out key keeps working, so clients can switch without an outage.
ROTATION_GRACE = timedelta(hours=24)


def hash_key(api_key: str) -> str:
    # API keys carry 256 random bits, so a fast hash is safe; no salt needed to resist guessing.
    return hashlib.sha256(api_key.encode()).hexdigest()


def _new_key() -> str:
    return f"rk_{secrets.token_urlsafe(32)}"


def create_merchant(ctx: Context, name: str) -> tuple[Merchant, str]:
    """Create a merchant and return it with its API key (the only time the key is seen)."""
    name = name.strip()
    if not name or len(name) > 200:
        raise ValidationFailed("merchant name must be 1 to 200 characters")
    api_key = _new_key()
    merchant = Merchant(
        id=new_id("mer"), name=name, api_key_hash=hash_key(api_key), created_at=ctx.clock()
    )
    with ctx.sessions.begin() as session:
        session.add(merchant)
    return merchant, api_key


def list_merchants(ctx: Context) -> list[Merchant]:
    """List every merchant, oldest first."""
    with ctx.read() as session:
        return repository.all_merchants(session)


def rotate_key(
    ctx: Context, name_or_id: str, grace: timedelta = ROTATION_GRACE
) -> tuple[Merchant, str]:
    """Give a merchant a new API key; the current one keeps working for `grace`.

    A zero grace revokes the current key at once (for a leaked key). A key rotated out
    earlier and still in its grace period stops working now: one previous key at a time.
    """
    if grace < timedelta(0):
        raise ValidationFailed("the grace period must not be negative")
    api_key = _new_key()
    with ctx.sessions.begin() as session:
        merchant = one_named(session, name_or_id)
        if grace:
            merchant.previous_key_hash = merchant.api_key_hash
            merchant.previous_key_expires_at = ctx.clock() + grace
        else:
            merchant.previous_key_hash = None
            merchant.previous_key_expires_at = None
        merchant.api_key_hash = hash_key(api_key)
    ctx.keys.clear()
    return merchant, api_key


def authenticate(ctx: Context, api_key: str) -> Merchant | None:
    """Find the merchant owning this API key (or its previous key, within the grace period).

    Accepted keys are cached for a few seconds (`services/key_cache.py` says what that
    means for revocation); unknown keys always read the database.
    """
    key_hash = hash_key(api_key)
    now = ctx.clock()
    cached = ctx.keys.get(key_hash, now)
    if cached is not None:
        return cached
    generation = ctx.keys.generation
    with ctx.read() as session:
        merchant = repository.merchant_by_key_hash(session, key_hash, now)
    if merchant is not None:
        ctx.keys.put(key_hash, merchant, now, generation)
    return merchant


def one_named(session: Session, name_or_id: str) -> Merchant:
    """Return the one merchant with this id or name; refuse none and several."""
    found = repository.merchants_named(session, name_or_id)
    if not found:
        raise NotFound(f"no merchant named {name_or_id!r}")
    if len(found) > 1:
        ids = ", ".join(m.id for m in found)
        raise ValidationFailed(f"several merchants are named {name_or_id!r} ({ids}): use an id")
    return found[0]
