"""Merchants and their API keys (stored as SHA-256 hashes, shown once)."""

from __future__ import annotations

import hashlib
import secrets

from reconciler.adapters import repository
from reconciler.adapters.models import Merchant
from reconciler.services.context import Context
from reconciler.services.errors import ValidationFailed
from reconciler.services.payments import new_id


def hash_key(api_key: str) -> str:
    # API keys carry 256 random bits, so a fast hash is safe; no salt needed to resist guessing.
    return hashlib.sha256(api_key.encode()).hexdigest()


def create_merchant(ctx: Context, name: str) -> tuple[Merchant, str]:
    """Create a merchant and return it with its API key (the only time the key is seen)."""
    name = name.strip()
    if not name or len(name) > 200:
        raise ValidationFailed("merchant name must be 1 to 200 characters")
    api_key = f"rk_{secrets.token_urlsafe(32)}"
    merchant = Merchant(
        id=new_id("mer"), name=name, api_key_hash=hash_key(api_key), created_at=ctx.clock()
    )
    with ctx.sessions.begin() as session:
        session.add(merchant)
    return merchant, api_key


def authenticate(ctx: Context, api_key: str) -> Merchant | None:
    """Find the merchant owning this API key."""
    with ctx.read() as session:
        return repository.merchant_by_key_hash(session, hash_key(api_key))
