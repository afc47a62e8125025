"""Recently accepted API keys, so that a merchant's requests do not each read the database.

What revocation means with the cache (also in docs/architecture.md, "Data"):

- in the process that rotates or revokes a key, the cache is cleared in the same call:
  the old key stops working at once (zero grace) or at the end of its grace period;
- in every other process (another replica, a server while `reconciler merchant
  rotate-key` runs beside it) a revoked key may still be accepted for at most `TTL`;
- a rotated-out key's grace period is honoured to the instant everywhere: an entry
  found by a previous key is kept no longer than that key's expiry;
- unknown keys are never cached, so a new key works at once everywhere.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from reconciler.adapters.models import Merchant

TTL = timedelta(seconds=2)
MAX_ENTRIES = 1024  # keys of active merchants; past this the cache starts over


@dataclass(frozen=True)
class _Entry:
    merchant: Merchant
    until: datetime


class KeyCache:
    """Merchants by API-key hash, each kept for `TTL` (or less, see the module docstring)."""

    def __init__(self, ttl: timedelta = TTL, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        # Bumped by `clear`: a lookup that began before a rotation must not store its answer.
        self.generation = 0

    def get(self, key_hash: str, now: datetime) -> Merchant | None:
        """Return the merchant accepted for this key hash, if it was so recently enough."""
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        if now >= entry.until:
            with self._lock:
                if self._entries.get(key_hash) is entry:
                    del self._entries[key_hash]
            return None
        return entry.merchant

    def put(self, key_hash: str, merchant: Merchant, now: datetime, generation: int) -> None:
        """Remember that this key hash belongs to `merchant`, as read at `now`.

        `generation` is `self.generation` from before the read: if a rotation cleared the
        cache meanwhile, the answer may be stale and is not kept.
        """
        until = now + self.ttl
        if key_hash != merchant.api_key_hash and merchant.previous_key_expires_at is not None:
            until = min(until, merchant.previous_key_expires_at)
        with self._lock:
            if generation != self.generation:
                return
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key_hash] = _Entry(merchant, until)

    def clear(self) -> None:
        """Forget every key (a key was rotated or revoked in this process)."""
        with self._lock:
            self.generation += 1
            self._entries.clear()
