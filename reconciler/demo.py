"""`reconciler demo`: simulator + service + traffic on this machine, scored.

The demo starts the gateway simulator and `reconciler serve` as two subprocesses on free
loopback ports (SQLite in a temporary directory, a fresh webhook secret), creates payments
through the merchant API, injects the faults of the chosen profile (lost, duplicated and
reordered webhooks, failing polls, one outage) and waits for the payments to settle. Then
it scores the run against the simulator's ground truth: a payment whose terminal status
differs from the gateway's is *wrong*, and a single wrong payment makes the exit code 1.

`Stack`, `collect` and `score` are reused by the benchmarks (`bench/`).
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import requests

TERMINAL = ("succeeded", "failed", "canceled")


@dataclass(frozen=True)
class Profile:
    """What the demo runs: population, faults and the service's (short) poll policy."""

    payments: int = 300
    seed: int | None = None
    settle_min_s: float = 1.0
    settle_max_s: float = 15.0
    webhook_loss: float = 0.20
    webhook_duplicate: float = 0.10
    webhook_reorder: float = 0.10
    p_5xx: float = 0.05
    latency_max_s: float = 0.0
    webhooks: bool = True
    outage_at_s: float = 10.0
    outage_s: float = 5.0  # 0: no outage
    first_delay_s: float = 2.0
    base_delay_s: float = 1.0
    max_delay_s: float = 8.0
    sweep_interval_s: float = 0.5
    breaker_cooldown_s: float = 2.0
    breaker_max_cooldown_s: float = 8.0
    create_concurrency: int = 8
    timeout_s: float = 120.0

    def service_env(self) -> dict[str, str]:
        """The service's settings for this profile (no secrets, no addresses)."""
        return {
            "RECONCILER_POLL_FIRST_DELAY_S": str(self.first_delay_s),
            "RECONCILER_POLL_BASE_DELAY_S": str(self.base_delay_s),
            "RECONCILER_POLL_MAX_DELAY_S": str(self.max_delay_s),
            "RECONCILER_POLL_GIVE_UP_AFTER_S": "3600",
            "RECONCILER_SWEEP_INTERVAL_S": str(self.sweep_interval_s),
            "RECONCILER_BREAKER_COOLDOWN_S": str(self.breaker_cooldown_s),
            "RECONCILER_BREAKER_MAX_COOLDOWN_S": str(self.breaker_max_cooldown_s),
            "RECONCILER_GATEWAY_READ_TIMEOUT_S": "5",
            "RECONCILER_GATEWAY_CREATE_TIMEOUT_S": "5",
            "RECONCILER_LOG_LEVEL": "WARNING",
        }

    def simulator_flags(self) -> list[str]:
        flags = [
            "--settle-min",
            str(self.settle_min_s),
            "--settle-max",
            str(self.settle_max_s),
            "--webhook-loss",
            str(self.webhook_loss),
            "--webhook-duplicate",
            str(self.webhook_duplicate),
            "--webhook-reorder",
            str(self.webhook_reorder),
            "--p-5xx",
            str(self.p_5xx),
            "--latency-max",
            str(self.latency_max_s),
        ]
        if self.seed is not None:
            flags += ["--seed", str(self.seed)]
        if not self.webhooks:
            flags.append("--no-webhooks")
        return flags


# -- processes --------------------------------------------------------------------------------


def free_port() -> int:
    """Ask the kernel for a free loopback port (closed again at once; a small race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def new_webhook_secret() -> str:
    """Make a Standard Webhooks secret (`whsec_` + base64 of 24 random bytes)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    # The caller's own RECONCILER_* settings must not leak into a throw-away stack.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    """Stop a child we started (its whole process group: gunicorn has workers)."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        process.wait(timeout=10)


@dataclass
class Stack:
    """A running simulator and service, with a merchant's API key."""

    workdir: Path
    simulator_url: str
    service_url: str
    api_key: str
    webhook_secret: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    http: requests.Session = field(default_factory=requests.Session)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def sim(self, path: str) -> Any:
        response = self.http.get(f"{self.simulator_url}/_sim/{path}", timeout=30)
        response.raise_for_status()
        return response.json()

    def sim_post(self, path: str, body: dict[str, Any]) -> Any:
        response = self.http.post(f"{self.simulator_url}/_sim/{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def payments(self) -> list[dict[str, Any]]:
        """Every payment of the merchant, through the API (pages of 100)."""
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": 100}
            if cursor:
                params["cursor"] = cursor
            response = self.http.get(
                f"{self.service_url}/v1/payments", params=params, headers=self.headers, timeout=30
            )
            response.raise_for_status()
            body = response.json()
            out.extend(body["data"])
            cursor = body.get("next_cursor")
            if not cursor:
                return out

    def logs(self, name: str, lines: int = 40) -> str:
        path = self.workdir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _wait_for_line(
    path: Path, marker: str, process: subprocess.Popen[bytes], timeout: float
) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text(errors="replace").splitlines():
                if marker in line:
                    return line
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"{path.stem} did not start:\n{path.read_text(errors='replace')[-3000:]}")


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the service did not start:\n{log.read_text(errors='replace')[-3000:]}")


@contextmanager
def run_stack(
    profile: Profile,
    *,
    service_env: dict[str, str] | None = None,
    database_url: str | None = None,
) -> Iterator[Stack]:
    """Start simulator + `reconciler serve` on loopback; stop both, whatever happens."""
    workdir = Path(tempfile.mkdtemp(prefix="reconciler-demo-"))
    processes: list[subprocess.Popen[bytes]] = []
    stack: Stack | None = None
    try:
        secret = new_webhook_secret()
        port = free_port()
        service_url = f"http://127.0.0.1:{port}"
        sim_log = workdir / "simulator.log"
        with sim_log.open("wb") as out:
            simulator = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "reconciler.simulator",
                    "--port",
                    "0",
                    "--webhook-url",
                    f"{service_url}/webhooks/simulator",
                    *profile.simulator_flags(),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                # The secret travels in the environment, never on a command line.
                env=_clean_env({"RECONCILER_SIMULATOR_WEBHOOK_SECRET": secret}),
                start_new_session=True,
            )
        processes.append(simulator)
        line = _wait_for_line(sim_log, "simulator listening on", simulator, 20)
        simulator_url = line.rsplit(" ", 1)[-1].strip()
        env = _clean_env(
            {
                "RECONCILER_DATABASE_URL": database_url or f"sqlite:///{workdir / 'reconciler.db'}",
                "RECONCILER_SIMULATOR_URL": simulator_url,
                "RECONCILER_SIMULATOR_WEBHOOK_SECRET": secret,
                "RECONCILER_PORT": str(port),
                **profile.service_env(),
                **(service_env or {}),
            }
        )
        cli = [sys.executable, "-m", "reconciler.entrypoints.cli"]
        merchant = subprocess.run(
            [*cli, "merchant", "create", "demo"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if merchant.returncode != 0 or not merchant.stdout.strip():
            raise RuntimeError(f"merchant create failed:\n{merchant.stdout}\n{merchant.stderr}")
        api_key = merchant.stdout.strip().splitlines()[-1]
        service_log = workdir / "service.log"
        with service_log.open("wb") as out:
            service = subprocess.Popen(
                [*cli, "serve"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        processes.append(service)
        _wait_healthy(service_url, service, service_log, 30)
        stack = Stack(workdir, simulator_url, service_url, api_key, secret, processes)
        yield stack
    finally:
        if stack is not None:
            stack.http.close()
        for process in reversed(processes):
            _stop(process)
        shutil.rmtree(workdir, ignore_errors=True)


# -- traffic ----------------------------------------------------------------------------------


def create_payments(stack: Stack, count: int, concurrency: int, prefix: str = "demo") -> int:
    """Create `count` payments through the API; returns how many were accepted."""
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


class Progress:
    """A one-line text progress bar on stderr, redrawn with `\\r`."""

    def __init__(self, total: int, out: TextIO = sys.stderr, width: int = 30) -> None:
        self.total = max(1, total)
        self.out = out
        self.width = width
        self.tty = out.isatty()
        self._last = ""

    def update(self, done: int, note: str) -> None:
        filled = int(self.width * min(done, self.total) / self.total)
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{self.total} {note}"
        if line == self._last:
            return
        self._last = line
        # Pad to erase a longer previous line.
        self.out.write("\r" + line.ljust(100))
        self.out.flush()

    def close(self) -> None:
        self.out.write("\n")
        self.out.flush()


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
    """Start a simulator outage `at_s` seconds from now; remembers the window."""

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


# -- scoring ----------------------------------------------------------------------------------


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100), linear between closest ranks; None for no data."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    """Count, mean and p50/p95/p99 of a sample, rounded for display."""

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 3)

    return {
        "n": len(values),
        "mean": r(sum(values) / len(values)) if values else None,
        "p50": r(percentile(values, 50)),
        "p95": r(percentile(values, 95)),
        "p99": r(percentile(values, 99)),
        "max": r(max(values)) if values else None,
    }


@dataclass
class Collected:
    """Everything the scoring reads: our view, the gateway's truth, calls and webhooks."""

    ours: list[dict[str, Any]]
    truth: dict[str, Any]
    calls: dict[str, Any]
    webhooks: dict[str, Any]
    timelines: dict[str, list[dict[str, Any]]]


def collect(stack: Stack, *, timelines: bool = True) -> Collected:
    """Read both sides' final state (and every payment's timeline, in parallel)."""
    ours = stack.payments()
    events: dict[str, list[dict[str, Any]]] = {}
    if timelines:
        local = threading.local()

        def timeline(payment_id: str) -> tuple[str, list[dict[str, Any]]]:
            session: requests.Session | None = getattr(local, "session", None)
            if session is None:
                session = local.session = requests.Session()
            url = f"{stack.service_url}/v1/payments/{payment_id}/events"
            response = session.get(url, headers=stack.headers, timeout=30)
            response.raise_for_status()
            return payment_id, response.json()["data"]

        with ThreadPoolExecutor(max_workers=8) as pool:
            events = dict(pool.map(timeline, [p["id"] for p in ours]))
    return Collected(
        ours=ours,
        truth=stack.sim("truth")["payments"],
        calls=stack.sim("calls"),
        webhooks=stack.sim("webhooks"),
        timelines=events,
    )


def score(data: Collected, outage: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score a run: convergence, wrong payments, calls, staleness, outage, duplicates."""
    truth = data.truth
    delivered_terminal: set[str] = set()
    for d in data.webhooks["deliveries"]:
        if d["status"] in TERMINAL and isinstance(d["answer"], int) and 200 <= d["answer"] < 300:
            delivered_terminal.add(d["payment_id"])
    per_payment_calls: dict[str, list[dict[str, Any]]] = data.calls["payments"]

    converged = wrong = unsettled = not_created = 0
    wrong_ids: list[str] = []
    polls: dict[str, list[float]] = {"webhook_arrived": [], "webhook_lost": []}
    stale: dict[str, list[float]] = {"webhook_arrived": [], "webhook_lost": []}
    for payment in data.ours:
        gid: str = payment.get("gateway_payment_id") or ""
        known = truth.get(gid)
        if known is None:
            not_created += 1
            continue
        calls = per_payment_calls.get(gid, [])
        group = "webhook_arrived" if gid in delivered_terminal else "webhook_lost"
        polls[group].append(sum(1 for c in calls if c["kind"] == "fetch"))
        status = payment["status"]
        if status in TERMINAL and status != known["final_status"]:
            wrong += 1
            wrong_ids.append(payment["id"])
            continue
        if status not in TERMINAL:
            unsettled += 1
            continue
        converged += 1
        ours_at, final_at = parse_time(payment["settled_at"]), parse_time(known["final_at"])
        if ours_at is not None and final_at is not None:
            stale[group].append((ours_at - final_at).total_seconds())

    applied_per_event: Counter[str] = Counter()
    duplicate_receipts = 0
    for events in data.timelines.values():
        for event in events:
            event_id = event.get("gateway_event_id")
            if not event_id:
                continue
            if event["outcome"] in ("applied", "late_success"):
                applied_per_event[event_id] += 1
            elif event["outcome"] == "duplicate":
                duplicate_receipts += 1
    applied_twice = sum(1 for n in applied_per_event.values() if n > 1)

    all_calls = [c for calls in per_payment_calls.values() for c in calls]
    all_calls += data.calls.get("unattributed", [])
    outage_report: dict[str, Any] | None = None
    if outage and outage.get("start"):
        start, end = parse_time(outage["start"]), parse_time(outage["end"])
        assert start is not None and end is not None
        during = [c for c in all_calls if start <= (parse_time(c["started_at"]) or start) < end]
        outage_report = {
            "start": outage["start"],
            "duration_s": round((end - start).total_seconds(), 3),
            "calls": len(during),
            "answered_503": sum(1 for c in during if c["answer"] == 503),
        }
    deliveries = data.webhooks["deliveries"]
    totals = data.calls["totals"]
    fetches = sum(sum(v) for v in polls.values())
    return {
        "payments": len(data.ours),
        "converged": converged,
        "wrong": wrong,
        "wrong_ids": wrong_ids[:20],
        "not_settled": unsettled,
        "not_created_at_gateway": not_created,
        "gateway_calls": {
            "total": totals["all"],
            "creates": totals["by_kind"].get("create", 0),
            "polls": totals["by_kind"].get("fetch", 0),
            "by_answer": totals["by_answer"],
            "per_payment": round(totals["all"] / max(1, len(data.ours)), 3),
            "polls_per_payment": round(fetches / max(1, len(data.ours)), 3),
        },
        "polls_per_payment": {k: summary(v) for k, v in polls.items()},
        "staleness_s": {
            "all": summary(stale["webhook_arrived"] + stale["webhook_lost"]),
            **{k: summary(v) for k, v in stale.items()},
        },
        "outage": outage_report,
        "webhooks": {
            "events": data.webhooks["totals"]["events"],
            "attempts": len(deliveries),
            "delivered_ok": data.webhooks["totals"]["delivered_ok"],
            "lost": len(data.webhooks["losses"]),
            "duplicate_copies_sent": sum(1 for d in deliveries if d["copy"] == "duplicate"),
            "reordered_sent": sum(1 for d in deliveries if d["reordered"]),
            "duplicates_recorded": duplicate_receipts,
            "applied_twice": applied_twice,
        },
        "staleness_samples": stale,
    }


def _fmt(value: float | int | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value}{unit}"
    return f"{value:.2f}{unit}"


def render(report: dict[str, Any], profile: Profile, elapsed_s: float) -> str:
    """The report as text, one topic a line."""
    calls = report["gateway_calls"]
    polls = report["polls_per_payment"]
    stale = report["staleness_s"]
    hooks = report["webhooks"]
    arrived, lost = polls["webhook_arrived"], polls["webhook_lost"]
    outage = report["outage"]
    verdict = (
        "OK: every settled payment matches the gateway's ground truth"
        if report["wrong"] == 0
        else f"FAIL: {report['wrong']} payment(s) disagree with the gateway: "
        + ", ".join(report["wrong_ids"])
    )
    if report["wrong"] == 0 and report["not_settled"]:
        verdict += f" ({report['not_settled']} still pending at the timeout)"
    faults = (
        f"webhooks {profile.webhook_loss:.0%} lost, {profile.webhook_duplicate:.0%} duplicated, "
        f"{profile.webhook_reorder:.0%} reordered; calls {profile.p_5xx:.0%} 5xx"
    )
    if profile.outage_s > 0:
        faults += f"; {profile.outage_s:g} s outage at +{profile.outage_at_s:g} s"
    lines = [
        f"Reconciler demo: {report['payments']} payments in {elapsed_s:.1f} s"
        + (f" (seed {profile.seed})" if profile.seed is not None else ""),
        f"  faults          {faults}",
        f"  payments        {report['converged']} converged, {report['wrong']} wrong, "
        f"{report['not_settled']} not settled, "
        f"{report['not_created_at_gateway']} not created at the gateway",
        f"  gateway calls   {calls['total']} ({calls['creates']} creates, {calls['polls']} polls)"
        f" = {calls['per_payment']:.2f} per payment",
        f"  polls/payment   terminal webhook arrived: mean {_fmt(arrived['mean'])}, "
        f"max {_fmt(arrived['max'])} (n={arrived['n']})",
        f"                  terminal webhook lost:    mean {_fmt(lost['mean'])}, "
        f"max {_fmt(lost['max'])} (n={lost['n']})",
        f"  staleness       gateway settled -> we settled: p50 {_fmt(stale['all']['p50'], ' s')}"
        f"  p95 {_fmt(stale['all']['p95'], ' s')}  p99 {_fmt(stale['all']['p99'], ' s')}",
        f"                  webhook arrived p50 {_fmt(stale['webhook_arrived']['p50'], ' s')} "
        f"p99 {_fmt(stale['webhook_arrived']['p99'], ' s')}; "
        f"webhook lost p50 {_fmt(stale['webhook_lost']['p50'], ' s')} "
        f"p99 {_fmt(stale['webhook_lost']['p99'], ' s')}",
    ]
    if outage:
        lines.append(
            f"  outage          {outage['duration_s']:.1f} s: {outage['calls']} gateway calls "
            f"during it ({outage['answered_503']} answered 503); the breaker held the rest"
        )
    else:
        lines.append("  outage          none")
    lines += [
        f"  webhooks        {hooks['events']} events: {hooks['delivered_ok']} delivered, "
        f"{hooks['lost']} lost, {hooks['duplicate_copies_sent']} duplicate copies, "
        f"{hooks['reordered_sent']} reordered",
        f"  duplicates      {hooks['duplicates_recorded']} recorded as duplicates, "
        f"{hooks['applied_twice']} applied twice",
        f"  verdict         {verdict}",
    ]
    return "\n".join(lines)


def plot(path: str, report: dict[str, Any], data: Collected, t0: datetime | None) -> None:
    """Draw the staleness histogram and the gateway calls over time (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    samples = report["staleness_samples"]
    left.hist(
        [samples["webhook_arrived"], samples["webhook_lost"]],
        bins=30,
        stacked=True,
        label=["terminal webhook arrived", "terminal webhook lost"],
    )
    left.set_xlabel("staleness: gateway settled -> we settled (s)")
    left.set_ylabel("payments")
    left.set_title("Staleness")
    left.legend()

    calls = [c for calls in data.calls["payments"].values() for c in calls]
    starts = [parse_time(c["started_at"]) for c in calls]
    base = t0 or min((s for s in starts if s is not None), default=None)
    if base is not None:
        fetch = [
            (s - base).total_seconds()
            for c, s in zip(calls, starts, strict=True)
            if s is not None and c["kind"] == "fetch"
        ]
        create = [
            (s - base).total_seconds()
            for c, s in zip(calls, starts, strict=True)
            if s is not None and c["kind"] == "create"
        ]
        settled = [
            (t - base).total_seconds()
            for t in (parse_time(v["final_at"]) for v in data.truth.values())
            if t is not None
        ]
        right.hist([create, fetch], bins=60, stacked=True, label=["creates", "polls"])
        right.hist(settled, bins=60, histtype="step", color="black", label="gateway settlements")
        outage = report["outage"]
        if outage:
            start = parse_time(outage["start"])
            if start is not None:
                x0 = (start - base).total_seconds()
                right.axvspan(
                    x0, x0 + outage["duration_s"], color="red", alpha=0.15, label="outage"
                )
    right.set_xlabel("time since start (s)")
    right.set_ylabel("gateway calls")
    right.set_title("Gateway calls over time")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- command ----------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's flags to a parser."""
    d = Profile()
    add = parser.add_argument
    add("--payments", type=int, default=d.payments, help=f"how many (default {d.payments})")
    add("--seed", type=int, default=None, help="simulator random seed")
    add("--settle-min", type=float, default=d.settle_min_s, help="gateway settles after, min s")
    add("--settle-max", type=float, default=d.settle_max_s, help="gateway settles after, max s")
    add("--webhook-loss", type=float, default=d.webhook_loss, help="P(webhook lost)")
    add("--webhook-duplicate", type=float, default=d.webhook_duplicate, help="P(sent twice)")
    add("--webhook-reorder", type=float, default=d.webhook_reorder, help="P(held back)")
    add("--p-5xx", type=float, default=d.p_5xx, help="P(a gateway call answers 5xx)")
    add("--no-webhooks", action="store_true", help="the gateway sends no webhooks at all")
    add("--outage-at", type=float, default=d.outage_at_s, help="outage start, s after traffic")
    add("--outage", type=float, default=d.outage_s, help="outage length in s; 0 for none")
    add(
        "--first-delay",
        type=float,
        default=d.first_delay_s,
        help="service: grace before 1st poll, s",
    )
    add("--base-delay", type=float, default=d.base_delay_s, help="service: first backoff delay, s")
    add("--max-delay", type=float, default=d.max_delay_s, help="service: backoff cap, s")
    add("--timeout", type=float, default=d.timeout_s, help="give up waiting after this many s")
    add("--plot", metavar="FILE.png", default=None, help="draw staleness and poll timing")
    add("--json", action="store_true", help="also print the report as JSON")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cleanup_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so `finally` blocks stop the children."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


def run(args: argparse.Namespace) -> int:
    """Run the demo; exit 1 if any payment is wrong, 3 if some never settled."""
    cleanup_on_sigterm()
    profile = Profile(
        payments=args.payments,
        seed=args.seed,
        settle_min_s=args.settle_min,
        settle_max_s=max(args.settle_max, args.settle_min),
        webhook_loss=args.webhook_loss,
        webhook_duplicate=args.webhook_duplicate,
        webhook_reorder=args.webhook_reorder,
        p_5xx=args.p_5xx,
        webhooks=not args.no_webhooks,
        outage_at_s=args.outage_at,
        outage_s=args.outage,
        timeout_s=args.timeout,
        first_delay_s=args.first_delay,
        base_delay_s=args.base_delay,
        max_delay_s=max(args.max_delay, args.base_delay),
    )
    if profile.payments < 1:
        print("demo: --payments must be at least 1", file=sys.stderr)
        return 2
    print("starting the gateway simulator and the service on loopback...", file=sys.stderr)
    try:
        with run_stack(profile) as stack:
            return _drive(stack, profile, args)
    except RuntimeError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ndemo interrupted; both processes stopped", file=sys.stderr)
        return 130


def _drive(stack: Stack, profile: Profile, args: argparse.Namespace) -> int:
    print(
        f"simulator {stack.simulator_url}, service {stack.service_url}; "
        f"creating {profile.payments} payments",
        file=sys.stderr,
    )
    t0 = datetime.now(UTC)
    started = time.monotonic()
    outage: OutageTimer | None = None
    if profile.outage_s > 0:
        outage = OutageTimer(stack, profile.outage_at_s, profile.outage_s)
        outage.start()
    try:
        accepted = create_payments(stack, profile.payments, profile.create_concurrency)
        progress = Progress(accepted)
        settled = wait_settled(
            stack,
            accepted,
            started + profile.timeout_s,
            started,
            progress,
            outage.state if outage else None,
        )
        progress.close()
    finally:
        if outage is not None:
            outage.cancel()
    elapsed = time.monotonic() - started
    if not settled:
        print(f"timed out after {profile.timeout_s:g} s; scoring what settled", file=sys.stderr)
    data = collect(stack)
    report = score(data, outage.state if outage else None)
    report["elapsed_s"] = round(elapsed, 3)
    report["profile"] = asdict(profile)
    print(render(report, profile, elapsed))
    if args.plot:
        plot(args.plot, report, data, t0)
        print(f"plot written to {args.plot}", file=sys.stderr)
    if args.json:
        print(json.dumps({k: v for k, v in report.items() if k != "staleness_samples"}, indent=2))
    if report["wrong"]:
        return 1
    return 0 if report["not_settled"] == 0 and report["not_created_at_gateway"] == 0 else 3
