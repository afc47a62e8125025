"""Failed attempts per client in a sliding window: lock a client out after too many.

Pure: the caller passes the time. Memory is bounded: the oldest clients are forgotten
first when more than `max_clients` are tracked (an attacker rotating addresses gains
nothing a single address would not: each address still gets only `limit` tries).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass
class FailureLimiter:
    """Allow at most `limit` failures per client within `window`; then refuse until it passes."""

    limit: int = 5
    window: timedelta = timedelta(minutes=5)
    max_clients: int = 10_000
    _failures: OrderedDict[str, deque[datetime]] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def retry_after(self, client: str, now: datetime) -> float | None:
        """Say how many seconds the client must wait, or None when it may try now."""
        with self._lock:
            recent = self._recent(client, now)
            if len(recent) < self.limit:
                return None
            return max(1.0, (recent[0] + self.window - now).total_seconds())

    def failed(self, client: str, now: datetime) -> None:
        """Count one failed attempt of the client."""
        with self._lock:
            recent = self._recent(client, now)
            recent.append(now)
            self._failures[client] = recent
            self._failures.move_to_end(client)
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        """Forget the client's failures (it knew the secret)."""
        with self._lock:
            self._failures.pop(client, None)

    def _recent(self, client: str, now: datetime) -> deque[datetime]:
        recent = self._failures.get(client, deque())
        while recent and recent[0] <= now - self.window:
            recent.popleft()
        return recent
