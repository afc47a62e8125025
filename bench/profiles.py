"""`python -m bench --only profile-poll|profile-webhook|profile-delivery`: where the CPU goes.

Each runs the workload of its benchmark in this process, twice: once plain, for the
CPU per event (`time.process_time`: this process is the whole service side; SQLite is
in-process; the simulator, wrk and the receivers are other processes), then under yappi
(bench/profiler.py) for the table.

- poll: `Sweeper.sweep_once` over 500 due payments, 3 times (10 in the full run), C = 16,
  the simulator answering after 50 ms that they are still processing (as `bench --only
  polls`);
- webhook: the production server (`entrypoints/server.py`, waitress, 8 threads) run in a
  thread of this process, wrk sending signed webhooks for 200 tracked payments for 5 s
  (as `bench --only webhooks`; fresh webhook ids in each pass);
- delivery: the in-process sweep delivering 8 endpoints × N notifications to a receiver
  answering after 50 ms, C = 16 (as `bench --only deliveries`, its throughput part).
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from waitress import wasyncore

from bench import deliveries, polls
from bench.common import TESTS, say
from bench.load import TRACKED, requests_file, saturate
from bench.profiler import profiled, render_summary, summarise
from reconciler.bootstrap import bootstrap
from reconciler.config import Settings
from reconciler.entrypoints.app import create_app
from reconciler.entrypoints.commands import upgrade
from reconciler.entrypoints.server import Server, ServerOptions, bind
from reconciler.services.merchants import create_merchant
from reconciler.services.payments import PaymentRequest, register_payment
from reconciler.services.sweep import Sweeper

POLL_CONCURRENCY = 16
SECRET = deliveries.SECRET


@dataclass(frozen=True)
class ProfileCommand:
    """One profile command, shaped like a benchmark module (`run`, `render`)."""

    what: str
    workload: Callable[[bool, Callable[[], Any]], dict[str, Any]]

    def run(self, quick: bool) -> dict[str, Any]:
        plain = self.workload(quick, _nothing)
        captured: list[Any] = []

        @contextmanager
        def capture() -> Iterator[None]:
            with profiled() as stats:
                yield
            captured.append(stats)

        say(f"profile {self.what}: again under the profiler...")
        again = self.workload(quick, capture)
        return {
            "what": self.what,
            "events": plain["events"],
            "cpu_ms_per_event": plain["cpu_ms_per_event"],
            "profiled_events": again["events"],
            "profile": summarise(captured[0], again["events"]),
        }

    def render(self, result: dict[str, Any]) -> str:
        head = (
            f"profile {result['what']}: {result['events']} events, service CPU "
            f"{result['cpu_ms_per_event']:.3f} ms per event (without the profiler)"
        )
        return "\n".join([head, *render_summary(result["profile"])])


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _poll(quick: bool, around: Callable[[], Any]) -> dict[str, Any]:
    sys.path.insert(0, str(TESTS))
    from support.simulator import run_simulator

    tmp = Path(tempfile.mkdtemp(prefix="bench-profile-poll-"))
    try:
        db_url = f"sqlite:///{tmp / 'polls.db'}"
        upgrade(Settings(database_url=db_url))
        with run_simulator(**polls.SIMULATOR) as sim:
            with ThreadPoolExecutor(8) as pool:
                gids = list(
                    pool.map(lambda i: sim.create(settle_after_s=86400)["id"], range(polls.BATCH))
                )
            ctx = bootstrap(polls._settings(db_url, sim.url, POLL_CONCURRENCY))
            sweeper = Sweeper(ctx)
            try:
                merchant, _ = create_merchant(ctx, "bench")
                for i, gid in enumerate(gids):
                    request = PaymentRequest(f"p-{i}", "simulator", 1000, "USD", gid)
                    register_payment(ctx, merchant, request)
                rounds = 3 if quick else 10
                say(f"profile poll: {rounds} × {polls.BATCH} polls, C={POLL_CONCURRENCY}...")
                polled, cpu = 0, 0.0
                with around():
                    for _ in range(rounds):
                        polls.make_all_due(ctx)
                        started = time.process_time()
                        polled += sweeper.sweep_once().polled
                        cpu += time.process_time() - started
            finally:
                sweeper.close()
                ctx.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"events": polled, "cpu_ms_per_event": cpu / polled * 1000}


@contextmanager
def _serving(app: Any, settings: Settings) -> Iterator[str]:
    """Serve `app` with the production server in a thread of this process; yield its URL."""
    options = ServerOptions.from_env(settings)
    sockets = bind(options, "127.0.0.1", 0)
    server = Server(app, options, sockets)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            wasyncore.loop(timeout=0.2, map=server.map, use_poll=True, count=1)

    thread = threading.Thread(target=loop, name="bench-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        server.dispatcher.shutdown(cancel_pending=True, timeout=5)
        wasyncore.close_all(server.map)


def _webhook(quick: bool, around: Callable[[], Any]) -> dict[str, Any]:
    duration = 5 if quick else 15
    # Saturated on purpose: waitress' "Task queue depth is N" would flood the output.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    tmp = Path(tempfile.mkdtemp(prefix="bench-profile-webhook-"))
    try:
        db_url = f"sqlite:///{tmp / 'webhooks.db'}"
        settings = deliveries._settings(db_url)
        upgrade(settings)
        ctx = bootstrap(settings)
        try:
            merchant, _ = create_merchant(ctx, "bench")
            for i in range(TRACKED):
                request = PaymentRequest(f"w-{i}", "simulator", 1000, "USD", f"bench_gw_{i}")
                register_payment(ctx, merchant, request)
            path = requests_file(tmp / "requests.tsv", SECRET, 20_000 if quick else 60_000)
            with _serving(create_app(ctx=ctx), settings) as url:
                say(f"profile webhook: wrk for {duration} s...")
                with around():
                    cpu = time.process_time()
                    load = saturate(url, path, duration)
                    cpu = time.process_time() - cpu
        finally:
            ctx.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if load["non_2xx"]:
        raise RuntimeError(f"{load['non_2xx']} webhooks were not accepted")
    return {"events": load["requests"], "cpu_ms_per_event": cpu / load["requests"] * 1000}


def _delivery(quick: bool, around: Callable[[], Any]) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-profile-delivery-"))
    try:
        result = deliveries.throughput(
            f"sqlite:///{tmp / 'deliveries.db'}", 40 if quick else 150, around
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"events": result["deliveries"], "cpu_ms_per_event": result["cpu_ms_per_delivery"]}


POLL = ProfileCommand("poll", _poll)
WEBHOOK = ProfileCommand("webhook", _webhook)
DELIVERY = ProfileCommand("delivery", _delivery)
