"""The demo's traffic: payments created through the API, a wait until they settle, an outage.

With notifications on, a merchant endpoint (the demo's receiver) is registered first, and
the demo waits for its deliveries after the payments have settled.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests

from reconciler.demo.profile import Profile
from reconciler.demo.progress import Progress
from reconciler.demo.receiver import EndpointFaults, Receiver, run_receiver
from reconciler.demo.stack import Stack

TERMINAL = ("succeeded", "failed", "canceled")


def create_payments(stack: Stack, count: int, concurrency: int, prefix: str = "demo") -> int:
    """Create `count` payments through the API; return how many were accepted."""
    local = threading.local()

    def one(i: int) -> bool:
        session: requests.Session | None = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        body = {
            "merchant_reference": f"{prefix}-{i:06d}",
            "gateway": "simulator",
            "amount": 100 + (i * 7919) % 99_900,
            "currency": "USD",
        }
        for _ in range(3):
            try:
                response = session.post(
                    f"{stack.service_url}/v1/payments", json=body, headers=stack.headers, timeout=30
                )
            except requests.RequestException:
                continue
            if response.status_code in (200, 201):
                return True
        return False

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return sum(pool.map(one, range(count)))


def wait_settled(
    stack: Stack,
    expected: int,
    deadline: float,
    started: float,
    progress: Progress | None = None,
    outage: dict[str, Any] | None = None,
) -> bool:
    """Wait until every payment has a terminal status (True) or the deadline passes (False)."""
    while True:
        try:
            payments = stack.payments()
            calls = stack.sim("stats")["calls"]
        except requests.RequestException:
            payments, calls = [], 0
        done = sum(1 for p in payments if p["status"] in TERMINAL)
        if progress is not None:
            flag = " OUTAGE" if outage and outage.get("active") else ""
            progress.update(
                done, f"settled  {time.monotonic() - started:5.1f} s  {calls} gateway calls{flag}"
            )
        if payments and done >= expected:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)


class OutageTimer:
    """Start a simulator outage `at_s` seconds from now; remember the window."""

    def __init__(self, stack: Stack, at_s: float, duration_s: float) -> None:
        self.state: dict[str, Any] = {"active": False}
        self._stack = stack
        self._duration = duration_s
        self._timer = threading.Timer(at_s, self._start)
        self._timer.daemon = True
        self._end_timer: threading.Timer | None = None

    def start(self) -> None:
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()
        if self._end_timer is not None:
            self._end_timer.cancel()

    def _start(self) -> None:
        try:
            window = self._stack.sim_post("outage", {"duration_s": self._duration})
        except requests.RequestException:
            return
        self.state.update(window, active=True)
        self._end_timer = threading.Timer(
            self._duration, self.state.update, kwargs={"active": False}
        )
        self._end_timer.daemon = True
        self._end_timer.start()


@dataclass(frozen=True)
class Endpoint:
    """The merchant endpoint the demo registered, and the receiver behind it."""

    id: str
    url: str
    receiver: Receiver


@contextmanager
def merchant_endpoint(stack: Stack, profile: Profile) -> Iterator[Endpoint | None]:
    """Serve a receiver with the profile's faults and register it for every event type.

    Yields None when the profile has notifications off.
    """
    if not profile.notifications:
        yield None
        return
    receiver = Receiver(EndpointFaults.of(profile), seed=profile.seed)
    with run_receiver(receiver) as url:
        try:
            endpoint = stack.add_endpoint(url)
        except requests.RequestException as exc:
            raise RuntimeError(f"registering the merchant endpoint failed: {exc}") from None
        receiver.arm(endpoint["secret"])
        yield Endpoint(endpoint["id"], url, receiver)


def wait_delivered(
    stack: Stack, endpoint: Endpoint, deadline: float, started: float, show: bool = True
) -> bool:
    """Wait until none of the endpoint's deliveries is pending (True) or the deadline passes.

    With `show`, a progress line counts the deliveries done (those there when it began).
    """
    progress: Progress | None = None
    try:
        while True:
            try:
                deliveries = stack.deliveries(endpoint.id)
            except requests.RequestException:
                deliveries = []
            pending = sum(1 for d in deliveries if d["status"] == "pending")
            if show and progress is None and deliveries:
                progress = Progress(len(deliveries))
            if progress is not None:
                elapsed = time.monotonic() - started
                progress.update(
                    len(deliveries) - pending,
                    f"notified  {elapsed:5.1f} s  {pending} deliveries pending",
                )
            if deliveries and not pending:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)
    finally:
        if progress is not None:
            progress.close()
