"""The demo's merchant endpoint: a loopback receiver with scripted faults.

It verifies every delivery with the `standardwebhooks` library and the endpoint's secret,
records when each one arrived and how it was answered, and answers as the profile says:
a share of 503s (with `Retry-After: 1`), a share answered only after the service's
delivery timeout, and an outage window during which every answer is a 503. It runs as a
thread of the demo's process, so the scoring reads its receipts directly.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from reconciler.demo.profile import Profile

MAX_BODY_BYTES = 1024 * 1024


class Answer(StrEnum):
    """How the endpoint answered one request."""

    OK = "ok"  # 200 at once
    ERROR = "503"  # a 5xx from the random share, with Retry-After: 1
    SLOW = "slow"  # 200, but only after the delivery timeout
    OUTAGE = "outage"  # 503 during the outage window
    REJECTED = "rejected"  # 400: the signature did not verify


@dataclass(frozen=True)
class EndpointFaults:
    """The endpoint's scripted faults; the outage window is relative to the traffic's start."""

    p_503: float = 0.0
    p_slow: float = 0.0
    slow_s: float = 0.0
    outage_at_s: float = 0.0
    outage_s: float = 0.0

    @classmethod
    def of(cls, profile: Profile) -> EndpointFaults:
        """Read the endpoint's faults from a demo profile."""
        return cls(
            p_503=profile.endpoint_p_503,
            p_slow=profile.endpoint_p_slow,
            slow_s=profile.slow_answer_s,
            outage_at_s=profile.endpoint_outage_at_s,
            outage_s=profile.endpoint_outage_s,
        )

    def answer(self, elapsed_s: float | None, roll: float) -> Answer:
        """Choose the answer for a request `elapsed_s` into the traffic, given a uniform roll.

        Inside the outage window every answer is an outage; elsewhere the roll falls in
        the slow share first, then the 503 share, else the answer is a prompt 200.
        """
        end = self.outage_at_s + self.outage_s
        if elapsed_s is not None and self.outage_s > 0 and self.outage_at_s <= elapsed_s < end:
            return Answer.OUTAGE
        if roll < self.p_slow:
            return Answer.SLOW
        if roll < self.p_slow + self.p_503:
            return Answer.ERROR
        return Answer.OK


class Receiver:
    """A WSGI app that verifies deliveries, records each receipt and answers with faults."""

    def __init__(
        self,
        faults: EndpointFaults,
        *,
        seed: int | None = None,
        rand: Callable[[], float] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.faults = faults
        self.clock = clock
        self.monotonic = monotonic
        self.sleep = sleep
        self._rand = rand or random.Random(seed).random
        self._lock = threading.Lock()
        self._webhook: Webhook | None = None
        self._started: float | None = None
        self._receipts: list[dict[str, Any]] = []

    def arm(self, secret: str) -> None:
        """Verify deliveries with the endpoint's secret from now on."""
        self._webhook = Webhook(secret)

    def begin(self) -> None:
        """Start the fault script's clock: the traffic starts now."""
        self._started = self.monotonic()

    def receipts(self) -> list[dict[str, Any]]:
        """Return a copy of every request received so far, in arrival order."""
        with self._lock:
            return list(self._receipts)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        response = self.handle(Request(environ))
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        """Verify one delivery, record it and answer as the fault script says."""
        arrived = self.clock()
        body = request.stream.read(MAX_BODY_BYTES + 1)
        webhook_id = request.headers.get("webhook-id", "")
        event = self._verify(body, request) if len(body) <= MAX_BODY_BYTES else None
        if event is None:
            self._record(webhook_id, arrived, Answer.REJECTED, {})
            return Response("signature does not verify\n", status=400)
        elapsed = None if self._started is None else self.monotonic() - self._started
        with self._lock:
            roll = self._rand()
        answer = self.faults.answer(elapsed, roll)
        self._record(webhook_id, arrived, answer, event)
        if answer is Answer.SLOW:
            self.sleep(self.faults.slow_s)
        if answer is Answer.ERROR:
            return Response("failing on purpose\n", status=503, headers={"Retry-After": "1"})
        if answer is Answer.OUTAGE:
            return Response("down on purpose\n", status=503)
        return Response("ok\n", status=200)

    def _verify(self, body: bytes, request: Request) -> dict[str, Any] | None:
        if self._webhook is None:
            return None
        try:
            event = self._webhook.verify(body, dict(request.headers))
        except (WebhookVerificationError, ValueError, UnicodeDecodeError):
            return None
        return event if isinstance(event, dict) else None

    def _record(
        self, webhook_id: str, arrived: datetime, answer: Answer, event: dict[str, Any]
    ) -> None:
        data = event.get("data")
        if not isinstance(data, dict):
            data = {}
        receipt = {
            "webhook_id": webhook_id,
            "arrived_at": _iso(arrived),
            "answer": answer.value,
            "type": event.get("type"),
            "created_at": event.get("created_at"),
            "sequence": event.get("sequence"),
            "payment_id": data.get("id"),
            "payment_status": data.get("status"),
        }
        with self._lock:
            self._receipts.append(receipt)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


@contextmanager
def run_receiver(receiver: Receiver) -> Iterator[str]:
    """Serve the receiver on a free loopback port in a thread; yield its URL; stop it."""
    server: BaseWSGIServer = make_server(
        "127.0.0.1", 0, receiver, threaded=True, request_handler=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, name="demo-endpoint", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
