"""Name lookups with a deadline, on a few threads of their own.

`getaddrinfo` cannot be interrupted: a name whose DNS never answers holds the thread
that asked for as long as the system resolver retries. Lookups therefore run on a small
pool; the caller waits at most its deadline and goes on (a timeout), leaving the lookup
to finish on the pool. Concurrent lookups of one name share one call, so a slow name
ties up one pool thread, not one per attempt.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

Lookup = Callable[[str, int], Sequence[str]]

POOL_THREADS = 8


class LookupTimedOut(Exception):
    """The name did not resolve within the deadline."""


class ResolverPool:
    """Run lookups off the caller's thread and wait for them with a deadline."""

    def __init__(self, threads: int = POOL_THREADS) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="notify-dns")
        self._pending: dict[tuple[int, str, int], Future[Sequence[str]]] = {}
        self._lock = threading.RLock()  # a done callback may run inside `resolve`

    def resolve(self, lookup: Lookup, host: str, port: int, timeout_s: float) -> Sequence[str]:
        """Return `lookup(host, port)`, or raise LookupTimedOut after `timeout_s`.

        Errors of the lookup itself are raised as they are.
        """
        key = (id(lookup), host, port)
        with self._lock:
            future = self._pending.get(key)
            if future is None:
                future = self._pool.submit(lookup, host, port)
                self._pending[key] = future
                future.add_done_callback(lambda _: self._done(key))
        try:
            return future.result(timeout=max(0.0, timeout_s))
        except FutureTimeout:
            raise LookupTimedOut(host) from None

    def _done(self, key: tuple[int, str, int]) -> None:
        with self._lock:
            self._pending.pop(key, None)


_POOL: ResolverPool | None = None
_POOL_LOCK = threading.Lock()


def shared_pool() -> ResolverPool:
    """The process's lookup pool (made on first use)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ResolverPool()
        return _POOL
