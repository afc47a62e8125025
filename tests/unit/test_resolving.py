"""Name lookups with a deadline: a silent DNS costs the caller its deadline, not a hang."""

from __future__ import annotations

import threading

import pytest

from reconciler.adapters.notify.resolving import LookupTimedOut, ResolverPool


class Dns:
    """A resolver the test controls: answers at once, or only once released."""

    def __init__(self, *, silent: bool = False) -> None:
        self.release = threading.Event()
        self.silent = silent
        self.calls = 0

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls += 1
        if self.silent:
            self.release.wait(30)
        return ["93.184.216.34"]


def test_a_lookup_that_does_not_answer_in_time_is_a_timeout() -> None:
    dns = Dns(silent=True)
    try:
        with pytest.raises(LookupTimedOut):
            ResolverPool().resolve(dns, "silent.example", 443, 0.05)
    finally:
        dns.release.set()


def test_callers_waiting_for_one_name_share_one_lookup() -> None:
    dns, pool = Dns(silent=True), ResolverPool(threads=2)
    try:
        for _ in range(5):
            with pytest.raises(LookupTimedOut):
                pool.resolve(dns, "silent.example", 443, 0.01)
        assert dns.calls == 1  # one pool thread held, not five
    finally:
        dns.release.set()


def test_an_answer_is_reused_for_a_while() -> None:
    dns, pool = Dns(), ResolverPool()
    assert pool.resolve(dns, "hooks.example", 443, 5) == ["93.184.216.34"]
    assert pool.resolve(dns, "hooks.example", 443, 5) == ["93.184.216.34"]
    assert dns.calls == 1
    assert ResolverPool(cache_s=0).resolve(dns, "hooks.example", 443, 5) == ["93.184.216.34"]
    assert dns.calls == 2
