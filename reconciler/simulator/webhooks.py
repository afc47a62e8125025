"""Webhook delivery: one background thread sending signed events when they fall due.

Events are due by simulator time (moving the clock makes them due); the thread itself waits
in real time. Delivery is sequential, so an event held back for reordering really arrives
after the payment's next event. Faults (loss, duplicate, reorder, delay) are drawn when the
payment is created; a failed delivery is retried with exponential backoff under the same
`webhook-id`, like a real gateway.
"""

from __future__ import annotations

import heapq
import itertools
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import requests
from standardwebhooks import Webhook

from reconciler.simulator.state import Payment, SimState, rfc3339

_TIE = timedelta(milliseconds=1)  # keeps a held-back or duplicate copy strictly after another


@dataclass(frozen=True)
class Event:
    id: str
    payment_id: str
    status: str
    body: str  # the exact JSON text that is signed and sent


@dataclass(order=True)
class Job:
    due: datetime
    seq: int
    event: Event = field(compare=False)
    attempt: int = field(default=1, compare=False)
    copy: str = field(default="original", compare=False)  # or "duplicate"
    lost: bool = field(default=False, compare=False)
    reordered: bool = field(default=False, compare=False)


class Dispatcher:
    """Queue, sign, send and record the simulator's webhooks."""

    def __init__(self, state: SimState) -> None:
        self._state = state
        self._cond = threading.Condition()
        self._queue: list[Job] = []
        self._seq = itertools.count()
        self._inflight = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._session = requests.Session()
        self.deliveries: list[dict[str, Any]] = []
        self.losses: list[dict[str, Any]] = []
        self.events = 0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sim-webhooks", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # -- scheduling -----------------------------------------------------------------------

    def schedule(self, payment: Payment) -> None:
        """Queue one event per status transition of the payment, with its drawn faults."""
        cfg = self._state.config
        if not cfg.sends_webhooks:
            return
        with self._state.lock:
            rng = self._state.rng
            draws = [
                (
                    cfg.webhook_delay(rng),
                    rng.random() < cfg.p_webhook_loss,
                    rng.random() < cfg.p_webhook_duplicate,
                    rng.random() < cfg.p_webhook_reorder,
                )
                for _ in payment.life
            ]
        jobs: list[Job] = []
        next_due: datetime | None = None
        # Walk backwards so a held-back event can be placed after its successor's due time.
        for step, (delay, lost, duplicate, reorder) in reversed(
            list(zip(payment.life, draws, strict=True))
        ):
            data = payment.as_json(step)
            body = json.dumps(
                {"type": f"payment.{step.status}", "timestamp": rfc3339(step.at), "data": data},
                separators=(",", ":"),
            )
            event = Event(f"msg_{secrets.token_hex(12)}", payment.id, step.status, body)
            due = step.at + timedelta(seconds=delay)
            held = reorder and next_due is not None
            if held and next_due is not None:
                due = max(due, next_due + _TIE)
            jobs.append(Job(due, 0, event, lost=lost, reordered=held))
            if duplicate and not lost:
                jobs.append(Job(due + _TIE, 0, event, copy="duplicate", reordered=held))
            next_due = due
        with self._cond:
            for job in sorted(jobs):
                job.seq = next(self._seq)
                heapq.heappush(self._queue, job)
            self.events += len(payment.life)
            self._cond.notify_all()

    # -- delivery -------------------------------------------------------------------------

    def _has_due(self) -> bool:
        return bool(self._queue) and self._queue[0].due <= self._state.clock.now()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                if not self._has_due():
                    wait = 0.5
                    if self._queue:
                        ahead = (self._queue[0].due - self._state.clock.now()).total_seconds()
                        wait = min(wait, max(ahead, 0.001))
                    self._cond.wait(timeout=wait)
                    continue
                job = heapq.heappop(self._queue)
                self._inflight += 1
            try:
                self._handle(job)
            finally:
                with self._cond:
                    self._inflight -= 1
                    self._cond.notify_all()

    def _handle(self, job: Job) -> None:
        event = job.event
        if job.lost:
            with self._cond:
                self.losses.append(self._loss(job, "lost"))
            return
        answer = self._send(event)
        now = self._state.clock.now()
        record = {
            "event_id": event.id,
            "payment_id": event.payment_id,
            "status": event.status,
            "type": f"payment.{event.status}",
            "attempt": job.attempt,
            "copy": job.copy,
            "reordered": job.reordered,
            "sent_at": rfc3339(now),
            "answer": answer,
        }
        ok = isinstance(answer, int) and 200 <= answer < 300
        cfg = self._state.config
        with self._cond:
            self.deliveries.append(record)
            if ok:
                return
            if job.attempt >= cfg.webhook_max_attempts:
                self.losses.append(self._loss(job, "retries_exhausted"))
                return
            backoff = cfg.webhook_retry_base_s * 2 ** (job.attempt - 1)
            retry = Job(
                now + timedelta(seconds=backoff),
                next(self._seq),
                event,
                attempt=job.attempt + 1,
                copy=job.copy,
                reordered=job.reordered,
            )
            heapq.heappush(self._queue, retry)

    def _loss(self, job: Job, reason: str) -> dict[str, Any]:
        return {
            "event_id": job.event.id,
            "payment_id": job.event.payment_id,
            "status": job.event.status,
            "type": f"payment.{job.event.status}",
            "due_at": rfc3339(job.due),
            "reason": reason,
        }

    def _send(self, event: Event) -> int | str:
        cfg = self._state.config
        assert cfg.webhook_url is not None and cfg.webhook_secret is not None
        # Signed with simulator time: it is the gateway's clock, moved together with the tests'.
        signed_at = self._state.clock.now()
        signature = Webhook(cfg.webhook_secret).sign(event.id, signed_at, event.body)
        headers = {
            "content-type": "application/json",
            "user-agent": "reconciler-simulator",
            "webhook-id": event.id,
            "webhook-timestamp": str(int(signed_at.timestamp())),
            "webhook-signature": signature,
        }
        try:
            response = self._session.post(
                cfg.webhook_url,
                data=event.body.encode(),
                headers=headers,
                timeout=(2.0, cfg.webhook_timeout_s),
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            return f"error: {type(exc).__name__}"
        response.close()
        return response.status_code

    # -- control plane --------------------------------------------------------------------

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every due webhook has been handled; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._cond.notify_all()
            while self._has_due() or self._inflight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(timeout=min(remaining, 0.05))
        return True

    def as_json(self) -> dict[str, Any]:
        with self._cond:
            sent = {(d["event_id"], d["copy"]) for d in self.deliveries}
            return {
                "deliveries": list(self.deliveries),
                "losses": list(self.losses),
                "pending": len(self._queue),
                "totals": {
                    "events": self.events,
                    "attempts": len(self.deliveries),
                    "delivered_ok": sum(
                        1
                        for d in self.deliveries
                        if isinstance(d["answer"], int) and 200 <= d["answer"] < 300
                    ),
                    "distinct_sent": len(sent),
                    "lost": len(self.losses),
                },
            }
