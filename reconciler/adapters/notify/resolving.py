"""Name lookups with a deadline, on a few threads of their own.

`getaddrinfo` cannot be interrupted: a name whose DNS never answers holds the thread
that asked for as long as the system resolver retries. Lookups therefore run on a small
pool; the caller waits at most its deadline and goes on (a timeout), leaving the lookup
to finish on the pool. Concurrent lookups of one name share one call, so a slow name
ties up one pool thread, not one per attempt; and an answer is kept for `CACHE_S`, so
the names of healthy endpoints rarely need the pool at all (a merchant that registers
many names that never answer can fill the pool, not stall other merchants' deliveries
to names already known). The guard checks every address again on each use, cached or
not.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

Lookup = Callable[[str, int], Sequence[str]]

POOL_THREADS = 8
CACHE_S = 30.0  # how long an answer is reused
CACHE_ENTRIES = 10_000


class LookupTimedOut(Exception):
    """The name did not resolve within the deadline."""


class ResolverPool:
    """Run lookups off the caller's thread and wait for them with a deadline."""

    def __init__(self, threads: int = POOL_THREADS, cache_s: float = CACHE_S) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="notify-dns")
        self._pending: dict[tuple[Lookup, str, int], Future[Sequence[str]]] = {}
        self._cache: dict[tuple[Lookup, str, int], tuple[float, Sequence[str]]] = {}
        self._cache_s = cache_s
        self._lock = threading.RLock()  # a done callback may run inside `resolve`

    def resolve(self, lookup: Lookup, host: str, port: int, timeout_s: float) -> Sequence[str]:
        """Return `lookup(host, port)`, or raise LookupTimedOut after `timeout_s`.

        Errors of the lookup itself are raised as they are.
        """
        key = (lookup, host, port)  # the lookup itself: an id could be reused
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] > time.monotonic():
                return cached[1]
            future = self._pending.get(key)
            if future is None:
                future = self._pool.submit(lookup, host, port)
                self._pending[key] = future
                future.add_done_callback(lambda _: self._done(key))
        try:
            answers = future.result(timeout=max(0.0, timeout_s))
        except FutureTimeout:
            raise LookupTimedOut(host) from None
        self._keep(key, answers)
        return answers

    def _done(self, key: tuple[Lookup, str, int]) -> None:
        with self._lock:
            self._pending.pop(key, None)

    def _keep(self, key: tuple[Lookup, str, int], answers: Sequence[str]) -> None:
        if self._cache_s <= 0:
            return
        with self._lock:
            if len(self._cache) > CACHE_ENTRIES:
                self._cache.clear()  # a crude bound: names are few, this is rare
            self._cache[key] = (time.monotonic() + self._cache_s, answers)


_POOL: ResolverPool | None = None
_POOL_LOCK = threading.Lock()


def shared_pool() -> ResolverPool:
    """The process's lookup pool (made on first use)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ResolverPool()
        return _POOL
