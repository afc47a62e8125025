"""The simulator's memory: its clock, the payments with their drawn lives, and every API call.

Longer than most modules: the simulated gateway's whole ground truth lives here.

All of it sits behind one lock. A payment's status is never stored: it is read from the
life drawn at creation and the simulator clock, so moving the clock settles payments.
"""

from __future__ import annotations

import math
import random
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from reconciler.simulator.config import TERMINAL, SimConfig


def rfc3339(moment: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC with `Z`."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Clock:
    """Real UTC time plus an offset that tests can push forward."""

    def __init__(self, wall: Callable[[], datetime] | None = None) -> None:
        self._wall = wall or (lambda: datetime.now(UTC))
        self._offset = timedelta()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._wall() + self._offset

    def advance(self, seconds: float) -> datetime:
        if seconds < 0:
            raise ValueError("the simulator clock only moves forward")
        with self._lock:
            self._offset += timedelta(seconds=seconds)
            return self._wall() + self._offset

    @property
    def offset_s(self) -> float:
        with self._lock:
            return self._offset.total_seconds()


@dataclass(frozen=True)
class Step:
    at: datetime
    status: str


@dataclass
class Payment:
    id: str
    amount: int
    currency: str
    reference: str
    idempotency_key: str | None
    created_at: datetime
    life: tuple[Step, ...]  # processing first, terminal last

    def step_at(self, now: datetime) -> Step:
        current = self.life[0]
        for step in self.life:
            if step.at <= now:
                current = step
        return current

    def as_json(self, step: Step) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": step.status,
            "amount": self.amount,
            "currency": self.currency,
            "reference": self.reference,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(step.at),
        }

    @property
    def final(self) -> Step:
        return self.life[-1]


@dataclass
class Call:
    kind: str  # "create" | "fetch"
    started_at: datetime
    payment_id: str | None = None
    idempotency_key: str | None = None
    ended_at: datetime | None = None
    answer: int | str | None = None  # HTTP code, or "hang"

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "payment_id": self.payment_id,
            "idempotency_key": self.idempotency_key,
            "started_at": rfc3339(self.started_at),
            "ended_at": rfc3339(self.ended_at) if self.ended_at else None,
            "answer": self.answer,
        }


@dataclass
class Fault:
    """What the gateway does to one API call besides answering it."""

    latency_s: float = 0.0
    answer: int | None = None  # 500/502/503/429 instead of the real answer
    retry_after_s: int | None = None
    hang_s: float | None = None
    reason: str = ""


class PaymentConflict(Exception):
    """An idempotency key reused with a different request body."""


@dataclass
class SimState:
    """The gateway's ground truth and its call log."""

    config: SimConfig
    clock: Clock = field(default_factory=Clock)
    lock: threading.RLock = field(default_factory=threading.RLock)
    payments: dict[str, Payment] = field(default_factory=dict)
    by_key: dict[str, str] = field(default_factory=dict)
    creations_by_key: dict[str, int] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    runtime_outages: list[tuple[datetime, datetime]] = field(default_factory=list)
    started_at: datetime = field(init=False)
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.started_at = self.clock.now()
        self.rng = random.Random(self.config.seed)

    # -- faults -------------------------------------------------------------------------

    def in_outage(self, now: datetime) -> bool:
        with self.lock:
            for start_s, duration_s in self.config.outages:
                start = self.started_at + timedelta(seconds=start_s)
                if start <= now < start + timedelta(seconds=duration_s):
                    return True
            return any(start <= now < end for start, end in self.runtime_outages)

    def start_outage(self, duration_s: float) -> tuple[datetime, datetime]:
        if duration_s <= 0:
            raise ValueError("duration_s must be positive")
        now = self.clock.now()
        window = (now, now + timedelta(seconds=duration_s))
        with self.lock:
            self.runtime_outages.append(window)
        return window

    def draw_fault(self) -> Fault:
        """Draw what goes wrong with one gateway API call (usually nothing)."""
        with self.lock:
            cfg = self.config
            fault = Fault(latency_s=self.rng.uniform(cfg.latency_min_s, cfg.latency_max_s))
            if self.in_outage(self.clock.now()):
                fault.answer, fault.reason = 503, "outage"
                return fault
            roll = self.rng.random()
            if roll < cfg.p_hang:
                fault.hang_s, fault.reason = cfg.hang_s, "hang"
            elif roll < cfg.p_hang + cfg.p_5xx:
                fault.answer, fault.reason = self.rng.choice((500, 502, 503)), "5xx"
            elif roll < cfg.p_hang + cfg.p_5xx + cfg.p_429:
                fault.answer, fault.reason = 429, "rate_limited"
                fault.retry_after_s = cfg.retry_after_s
            return fault

    # -- payments -----------------------------------------------------------------------

    def _life_rng(self) -> random.Random:
        """Return the generator that draws the next payment's life.

        With a seed and log-normal settle times, the n-th payment created gets its own
        generator seeded by (seed, n): runs that call the gateway differently (and so
        draw faults in another order) still meet the same population. Otherwise the
        shared generator, as always.
        """
        if self.config.settle_median_s is None or self.config.seed is None:
            return self.rng
        return random.Random(f"{self.config.seed}/{len(self.payments)}")

    def _draw_life(
        self,
        created_at: datetime,
        final_status: str | None,
        settle_after_s: float | None,
        requires_action: bool | None,
    ) -> tuple[Step, ...]:
        cfg = self.config
        rng = self._life_rng()
        if settle_after_s is not None:
            delay = settle_after_s
        elif cfg.settle_median_s is not None:
            drawn = rng.lognormvariate(math.log(cfg.settle_median_s), cfg.settle_sigma)
            delay = min(cfg.settle_max_s, max(cfg.settle_min_s, drawn))
        else:
            delay = rng.uniform(cfg.settle_min_s, cfg.settle_max_s)
        if final_status is None:
            names = [name for name, _ in cfg.outcomes]
            weights = [weight for _, weight in cfg.outcomes]
            final_status = rng.choices(names, weights)[0]
        if requires_action is None:
            requires_action = rng.random() < cfg.p_requires_action
        steps = [Step(created_at, "processing")]
        if requires_action and delay > 0:
            steps.append(
                Step(
                    created_at + timedelta(seconds=delay * rng.uniform(0.2, 0.8)),
                    "requires_action",
                )
            )
        steps.append(Step(created_at + timedelta(seconds=delay), final_status))
        return tuple(steps)

    def create_payment(
        self,
        *,
        amount: int,
        currency: str,
        reference: str,
        idempotency_key: str | None,
        final_status: str | None = None,
        settle_after_s: float | None = None,
        requires_action: bool | None = None,
    ) -> tuple[Payment, bool]:
        """Create a payment, or return the one this idempotency key created; True if new."""
        if final_status is not None and final_status not in TERMINAL:
            raise ValueError(f"final_status must be one of {', '.join(TERMINAL)}")
        if settle_after_s is not None and settle_after_s < 0:
            raise ValueError("settle_after_s must not be negative")
        with self.lock:
            if idempotency_key is not None and idempotency_key in self.by_key:
                existing = self.payments[self.by_key[idempotency_key]]
                if (existing.amount, existing.currency, existing.reference) != (
                    amount,
                    currency,
                    reference,
                ):
                    raise PaymentConflict("Idempotency-Key reused with different parameters")
                return existing, False
            now = self.clock.now()
            payment = Payment(
                id=f"sim_pay_{secrets.token_hex(12)}",
                amount=amount,
                currency=currency,
                reference=reference,
                idempotency_key=idempotency_key,
                created_at=now,
                life=self._draw_life(now, final_status, settle_after_s, requires_action),
            )
            self.payments[payment.id] = payment
            if idempotency_key is not None:
                self.by_key[idempotency_key] = payment.id
                self.creations_by_key[idempotency_key] = (
                    self.creations_by_key.get(idempotency_key, 0) + 1
                )
            return payment, True

    def payment_json(self, payment_id: str) -> dict[str, Any] | None:
        with self.lock:
            payment = self.payments.get(payment_id)
            if payment is None:
                return None
            return payment.as_json(payment.step_at(self.clock.now()))

    # -- call log -----------------------------------------------------------------------

    def start_call(
        self, kind: str, *, payment_id: str | None = None, idempotency_key: str | None = None
    ) -> Call:
        call = Call(
            kind=kind,
            started_at=self.clock.now(),
            payment_id=payment_id,
            idempotency_key=idempotency_key,
        )
        with self.lock:
            self.calls.append(call)
        return call

    def end_call(self, call: Call, answer: int | str) -> None:
        with self.lock:
            call.ended_at = self.clock.now()
            if call.answer is None:
                call.answer = answer

    # -- control-plane views --------------------------------------------------------------

    def truth(self) -> dict[str, Any]:
        with self.lock:
            now = self.clock.now()
            out: dict[str, Any] = {}
            for pid, payment in self.payments.items():
                step = payment.step_at(now)
                final = payment.final
                out[pid] = {
                    "status": step.status,
                    "updated_at": rfc3339(step.at),
                    "settled_at": rfc3339(final.at) if final.at <= now else None,
                    "final_status": final.status,
                    "final_at": rfc3339(final.at),
                    "created_at": rfc3339(payment.created_at),
                    "reference": payment.reference,
                    "amount": payment.amount,
                    "currency": payment.currency,
                    "idempotency_key": payment.idempotency_key,
                    "life": [{"status": s.status, "at": rfc3339(s.at)} for s in payment.life],
                }
            return {"now": rfc3339(now), "payments": out}

    def calls_json(self) -> dict[str, Any]:
        with self.lock:
            per_payment: dict[str, list[dict[str, Any]]] = {pid: [] for pid in self.payments}
            unattributed: list[dict[str, Any]] = []
            by_answer: dict[str, int] = {}
            by_kind: dict[str, int] = {}
            for call in self.calls:
                # A create that failed before the payment existed belongs to the payment its
                # idempotency key created later, if any.
                pid = call.payment_id
                if pid is None and call.idempotency_key is not None:
                    pid = self.by_key.get(call.idempotency_key)
                if pid in per_payment:
                    per_payment[pid].append(call.as_json())
                else:
                    unattributed.append(call.as_json())
                key = str(call.answer)
                by_answer[key] = by_answer.get(key, 0) + 1
                by_kind[call.kind] = by_kind.get(call.kind, 0) + 1
            return {
                "payments": per_payment,
                "unattributed": unattributed,
                "totals": {"all": len(self.calls), "by_kind": by_kind, "by_answer": by_answer},
            }

    def stats(self) -> dict[str, Any]:
        with self.lock:
            now = self.clock.now()
            statuses: dict[str, int] = {}
            for payment in self.payments.values():
                status = payment.step_at(now).status
                statuses[status] = statuses.get(status, 0) + 1
            return {
                "now": rfc3339(now),
                "clock_offset_s": self.clock.offset_s,
                "payments": len(self.payments),
                "statuses": statuses,
                "calls": len(self.calls),
                "max_creations_per_key": max(self.creations_by_key.values(), default=0),
                "in_outage": self.in_outage(now),
            }
