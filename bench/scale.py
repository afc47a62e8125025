"""The scale run: PostgreSQL, 1 M payments of which 100 k are due, 1 to 3 replicas.

One throwaway PostgreSQL database holds N payment rows, bulk-loaded by one
`INSERT … SELECT generate_series` (not through the API): D of them pending and due
(spread over the last two hours), the rest settled. A fake gateway
(bench/fake_gateway.py, a real HTTP server on loopback) answers every fetch after
exactly 50 ms that the payment is still processing, so every poll is a full round trip
plus a stored answer and the backlog never drains; it counts calls and notes any call
made for an id that already had one in flight (a row polled twice at once). Its own
ceiling is measured first with wrk.

Then for R = 1, 2, 3 replicas (real processes, bench/scale_replica.py: the in-process
sweep job of `reconciler serve`, each with its own engine and pool, one database), with
C = 16 calls in flight each (the default) and again with C = 4 (a limit one replica
reaches on two shared cores, so that series shows each replica adding throughput until
the CPU binds; the quick run does C = 16 with 3 replicas only), after a warm-up, over a
window of W seconds:

- polls per second (the gateway's count) against the limit R × C ÷ latency, and the
  machine's CPU (busy fraction of all cores, shared with whatever else runs);
- the claim's latency (the `UPDATE … SKIP LOCKED … RETURNING` statement, and the whole
  `repository.claim_due` call), p50 / p99 / max, from the replicas' own timings;
- CPU per poll: CPU seconds of the replicas and of every PostgreSQL process, ÷ polls;
- database connections (pg_stat_activity, sampled every second): open and in use.

Also per poll: commits, rows updated and inserted, WAL bytes (pg_stat_database and the
WAL position), and the sizes of the payments table, its due index and a timeline event.
Before each window the due rows are made due again, the timeline emptied and the table
vacuumed (untimed), so each window starts from the same state.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import requests

from bench.common import postgres, ratio, say
from reconciler.config import Settings
from reconciler.demo.scoring import percentile
from reconciler.demo.stack import stop_process
from reconciler.entrypoints.commands import upgrade

ROOT = Path(__file__).resolve().parents[1]
LATENCY_S = 0.05
CONCURRENCY = 16  # RECONCILER_SWEEP_CONCURRENCY per replica (the default)
LOW_CONCURRENCY = 4  # a limit one replica can reach on two shared cores
BATCH = 200  # RECONCILER_SWEEP_BATCH_SIZE (the default)
TICK = os.sysconf("SC_CLK_TCK")
BOUND_FRACTION = 0.9  # at or above this fraction of R × C ÷ L, the limit binds


@dataclass(frozen=True)
class Shape:
    rows: int
    due: int
    warmup_s: float
    window_s: float
    series: tuple[tuple[int, tuple[int, ...]], ...]  # (concurrency, replica counts)


QUICK = Shape(
    rows=100_000,
    due=20_000,
    warmup_s=4,
    window_s=10,
    series=((CONCURRENCY, (3,)), (LOW_CONCURRENCY, (1, 2, 3))),
)
FULL = Shape(
    rows=1_000_000,
    due=100_000,
    warmup_s=10,
    window_s=60,
    series=((CONCURRENCY, (1, 2, 3)), (LOW_CONCURRENCY, (1, 2, 3))),
)


# --- processes and CPU ------------------------------------------------------------------


def _proc_cpu(pid: int, *, children: bool = False) -> float:
    """CPU seconds of one process (all threads); with its reaped children's if asked."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / TICK


def _children(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.append(int(entry))
    return found


def _postgres_cpu(postmaster: int) -> float:
    """CPU seconds of the server: the postmaster, its live backends and the ones it reaped."""
    total = _proc_cpu(postmaster, children=True)
    return total + sum(_proc_cpu(pid) for pid in _children(postmaster))


def _postmaster_pid(directory: Path) -> int:
    for path in directory.rglob("postmaster.pid"):
        return int(path.read_text().split()[0])
    raise RuntimeError(f"no postmaster.pid under {directory}")


def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return sum(values) - idle, sum(values)


def _loadavg() -> str:
    with open("/proc/loadavg") as handle:
        return " ".join(handle.read().split()[:3])


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_for_line(log: Path, needle: str, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        for line in text.splitlines():
            if needle in line:
                return line
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited: {text[-2000:]}")
        time.sleep(0.1)
    raise RuntimeError(f"{process.args} did not say {needle!r} within 60 s")


# --- the database -----------------------------------------------------------------------


def _load(conninfo: str, shape: Shape) -> float:
    """Bulk-load the merchant and the payments; return the seconds it took."""
    started = time.monotonic()
    pending = f"n <= {shape.due}"
    sql = f"""
        INSERT INTO payments (
            id, merchant_id, merchant_reference, request_fingerprint, gateway,
            gateway_payment_id, idempotency_key, amount, currency, status, gateway_status,
            created_at, updated_at, settled_at, sync_state, poll_attempts, next_poll_at,
            give_up_at, version)
        SELECT 'pay_' || n, 'mer_scale', 'ref-' || n, 'f', 'simulator',
            'gw_' || n, 'idem_' || n, 1000, 'USD',
            CASE WHEN {pending} THEN 'pending' ELSE 'succeeded' END, 'processing',
            now() - interval '3 hours', now() - interval '3 hours',
            CASE WHEN {pending} THEN NULL ELSE now() - interval '3 hours' END,
            CASE WHEN {pending} THEN 'polling' ELSE 'settled' END, 1,
            CASE WHEN {pending} THEN now() - interval '2 hours' + n * interval '10 ms' END,
            now() + interval '3 days', 1
        FROM generate_series(1, {shape.rows}) AS n
    """
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO merchants (id, name, api_key_hash, created_at) "
            "VALUES ('mer_scale', 'scale', 'x', now())"
        )
        conn.execute(sql)  # type: ignore[arg-type]
        conn.execute("VACUUM ANALYZE payments")
    return time.monotonic() - started


def _reset(conninfo: str) -> None:
    """Make every pending row due again and unleased, empty the timeline, vacuum."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "UPDATE payments SET next_poll_at = now() - interval '2 hours'"
            " + substr(id, 5)::int * interval '10 ms', lease_owner = NULL,"
            " lease_expires_at = NULL, poll_attempts = 1, last_delay_s = NULL,"
            " sync_state = 'polling' WHERE status = 'pending'"
        )
        conn.execute("TRUNCATE payment_events, sweep_heartbeats")
        conn.execute("VACUUM ANALYZE payments")


def _db_counters(conninfo: str) -> dict[str, int]:
    """WAL position and this database's transaction and row counters."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, xact_commit,"
            " tup_inserted, tup_updated FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return dict(zip(("wal_bytes", "commits", "inserted", "updated"), row, strict=True))


def _sizes(conninfo: str) -> dict[str, Any]:
    """Bytes on disk of the payments table, its due index, and the timeline per event."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pg_total_relation_size('payments'), pg_relation_size('payments'),"
            " pg_relation_size('ix_payments_due'), pg_total_relation_size('payment_events'),"
            " (SELECT count(*) FROM payment_events)"
        ).fetchone()
    assert row is not None
    total, heap, due_index, events_bytes, events = row
    return {
        "payments_total_mb": round(total / 2**20, 1),
        "payments_heap_mb": round(heap / 2**20, 1),
        "due_index_mb": round(due_index / 2**20, 1),
        "events": events,
        "bytes_per_event": round(events_bytes / events) if events else None,
    }


class ConnectionSampler:
    """Sample pg_stat_activity of one database every second, in a thread."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self.samples: list[dict[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            while not self._stop.is_set():
                rows = conn.execute(
                    "SELECT coalesce(state, '?'), count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " GROUP BY 1"
                ).fetchall()
                self.samples.append({state: count for state, count in rows})
                self._stop.wait(1.0)

    def summary(self) -> dict[str, Any]:
        opened = [sum(sample.values()) for sample in self.samples]
        in_use = [
            sum(n for state, n in sample.items() if state != "idle") for sample in self.samples
        ]
        return {
            "samples": len(self.samples),
            "open_mean": round(statistics.fmean(opened), 1) if opened else None,
            "open_max": max(opened, default=None),
            "in_use_mean": round(statistics.fmean(in_use), 2) if in_use else None,
            "in_use_max": max(in_use, default=None),
        }


# --- one window -------------------------------------------------------------------------


def _gateway_stats(url: str) -> dict[str, Any]:
    response = requests.get(f"{url}/_fake/stats", timeout=10)
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def _ceiling(url: str, connections: int, seconds: int = 5) -> dict[str, Any] | None:
    """The fake gateway's own rate under wrk with `connections` at once, and its CPU."""
    if shutil.which("wrk") is None:
        say("scale: wrk not installed (apt-get install wrk): gateway ceiling not measured")
        return None
    before = _gateway_stats(url)
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", f"{url}/v1/payments/ceiling"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    after = _gateway_stats(url)
    rate = float(next(line for line in out.splitlines() if "Requests/sec" in line).split()[1])
    calls = after["calls"] - before["calls"]
    requests.post(f"{url}/_fake/reset", timeout=10).raise_for_status()
    return {
        "connections": connections,
        "requests_per_s": round(rate, 1),
        "limit_per_s": round(connections / LATENCY_S, 1),
        "fraction": ratio(rate, connections / LATENCY_S),
        "cpu_us_per_request": round((after["cpu_s"] - before["cpu_s"]) / calls * 1e6, 1),
    }


def _claims(files: list[Path], t0: float, t1: float) -> dict[str, Any]:
    """Claim timings of the payments queue within the window (other queues counted apart)."""
    statements: list[list[Any]] = []
    calls: list[list[Any]] = []
    for path in files:
        data = json.loads(path.read_text())
        statements += data["claim_statements"]
        calls += data["claim_calls"]
    inside = [s for s in statements if t0 <= s[0] <= t1]
    statements = [s for s in inside if s[3] == "payments"]
    calls = [c for c in calls if t0 <= c[0] <= t1 and c[3] == "payments"]

    def ms(values: list[float], q: float) -> float | None:
        value = percentile(values, q)
        return None if value is None else round(value * 1000, 2)

    took = [s[1] for s in statements]
    whole = [c[1] for c in calls]
    return {
        "claims": len(statements),
        "other_queue_claims": len(inside) - len(statements),
        "rows_per_claim": round(statistics.fmean(s[2] for s in statements), 1)
        if statements
        else None,
        "statement_p50_ms": ms(took, 50),
        "statement_p99_ms": ms(took, 99),
        "statement_max_ms": ms(took, 100),
        "call_p50_ms": ms(whole, 50),
        "call_p99_ms": ms(whole, 99),
        "call_max_ms": ms(whole, 100),
    }


@dataclass(frozen=True)
class Stack:
    """Where the run's parts are: the database, the gateway, the server's pid, a scratch dir."""

    db_url: str
    conninfo: str
    gateway: str
    postmaster: int
    tmp: Path


def _window(replicas: int, concurrency: int, shape: Shape, stack: Stack) -> dict[str, Any]:
    db_url, conninfo, gateway = stack.db_url, stack.conninfo, stack.gateway
    postmaster, tmp = stack.postmaster, stack.tmp
    requests.post(f"{gateway}/_fake/reset", timeout=10).raise_for_status()
    tag = f"c{concurrency}-r{replicas}"
    outs = [tmp / f"{tag}-{i}.json" for i in range(replicas)]
    procs = []
    try:
        for i, out in enumerate(outs):
            log = tmp / f"{tag}-{i}.log"
            proc = _start(
                [
                    "-m",
                    "bench.scale_replica",
                    "--database-url",
                    db_url,
                    "--gateway-url",
                    gateway,
                    "--concurrency",
                    str(concurrency),
                    "--batch",
                    str(BATCH),
                    "--name",
                    f"r{i}",
                    "--out",
                    str(out),
                ],
                log,
            )
            procs.append(proc)
        for i, proc in enumerate(procs):
            _wait_for_line(tmp / f"{tag}-{i}.log", "sweeping", proc)
        time.sleep(shape.warmup_s)
        with ConnectionSampler(conninfo) as sampler:
            g0, t0 = _gateway_stats(gateway), time.time()
            r0 = sum(_proc_cpu(p.pid) for p in procs)
            p0 = _postgres_cpu(postmaster)
            m0 = _machine_busy()
            d0 = _db_counters(conninfo)
            time.sleep(shape.window_s)
            g1, t1 = _gateway_stats(gateway), time.time()
            r1 = sum(_proc_cpu(p.pid) for p in procs)
            p1 = _postgres_cpu(postmaster)
            m1 = _machine_busy()
            d1 = _db_counters(conninfo)
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"replica exited early with {proc.returncode}")
    finally:
        for proc in procs:
            stop_process(proc)  # SIGTERM: each writes its timings and exits
    final = _gateway_stats(gateway)
    sizes = _sizes(conninfo)
    seconds = t1 - t0
    polls = g1["calls"] - g0["calls"]
    rate = polls / seconds
    limit = replicas * concurrency / LATENCY_S
    replica_cpu, postgres_cpu = r1 - r0, p1 - p0
    gateway_cpu = g1["cpu_s"] - g0["cpu_s"]
    busy = (m1[0] - m0[0]) / (m1[1] - m0[1]) if m1[1] > m0[1] else None
    fraction = rate / limit
    cores = os.cpu_count() or 1
    ours = (replica_cpu + postgres_cpu + gateway_cpu) / seconds  # cores used by this run
    if fraction >= BOUND_FRACTION:
        binds = "concurrency ÷ latency"
    elif busy is not None and busy >= 0.9:
        binds = "CPU"
    else:
        binds = "neither (below the limit with CPU to spare)"
    missing = [out for out in outs if not out.exists()]
    if missing:
        raise RuntimeError(f"replicas wrote no timings: {missing}")
    calls_per_replica = [json.loads(out.read_text())["calls"].get("poll", 0) for out in outs]
    heard = [json.loads(out.read_text())["notifications_heard"] for out in outs]
    return {
        "replicas": replicas,
        "concurrency": concurrency,
        "window_s": round(seconds, 1),
        "polls": polls,
        "polls_per_s": round(rate, 1),
        "limit_per_s": round(limit, 1),
        "fraction": round(fraction, 3),
        "binds": binds,
        "machine_busy": None if busy is None else round(busy, 3),
        "run_cores": round(ours, 2),
        "cores": cores,
        # The rate this run's CPU cost allows if it had every core to itself.
        "cpu_ceiling_per_s": round(cores * polls / (replica_cpu + postgres_cpu + gateway_cpu), 1)
        if polls
        else None,
        "cpu_ms_per_poll": {
            "replicas": round(replica_cpu / polls * 1000, 3) if polls else None,
            "postgres": round(postgres_cpu / polls * 1000, 3) if polls else None,
            "service_total": round((replica_cpu + postgres_cpu) / polls * 1000, 3)
            if polls
            else None,
            "fake_gateway": round(gateway_cpu / polls * 1000, 3) if polls else None,
        },
        "claim": _claims(outs, t0, t1),
        "connections": sampler.summary(),
        "per_poll": {key: round((d1[key] - d0[key]) / polls, 2) for key in d0} if polls else {},
        "sizes_after": sizes,
        "double_polls": final["overlaps"],
        "double_poll_ids": final["overlap_ids"],
        "max_calls_in_flight": final["max_in_flight"],
        "polls_per_replica": calls_per_replica,
        "due_notifications_heard_per_replica": heard,
    }


# --- the benchmark ----------------------------------------------------------------------


def run(quick: bool) -> dict[str, Any]:
    shape = QUICK if quick else FULL
    out: dict[str, Any] = {
        "rows": shape.rows,
        "due": shape.due,
        "latency_s": LATENCY_S,
        "batch": BATCH,
        "warmup_s": shape.warmup_s,
        "window_s": shape.window_s,
        "load_before": _loadavg(),
        "runs": [],
    }
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    gateway_proc = None
    try:
        with postgres() as server:
            if server is None:
                out["skipped"] = "PostgreSQL unavailable"
                return out
            db_url = server.create_database("scale")
            conninfo = server.conninfo("scale")
            upgrade(Settings(database_url=db_url))
            say(f"scale: loading {shape.rows} payments ({shape.due} due)...")
            out["load_s"] = round(_load(conninfo, shape), 1)
            postmaster = _postmaster_pid(server.directory)
            gateway_log = tmp / "gateway.log"
            gateway_proc = _start(
                ["-m", "bench.fake_gateway", "--latency", str(LATENCY_S)], gateway_log
            )
            line = _wait_for_line(gateway_log, "listening on", gateway_proc)
            gateway = line.split("listening on ")[1].strip()
            most = max(c * max(counts) for c, counts in shape.series)
            say(f"scale: the fake gateway's ceiling at {2 * most} connections...")
            out["gateway_ceiling"] = _ceiling(gateway, 2 * most)
            stack = Stack(db_url, conninfo, gateway, postmaster, tmp)
            for concurrency, counts in shape.series:
                for replicas in counts:
                    _reset(conninfo)
                    say(
                        f"scale: {replicas} replica(s), C={concurrency}, "
                        f"{shape.warmup_s:g} s warm-up, {shape.window_s:g} s window..."
                    )
                    out["runs"].append(_window(replicas, concurrency, shape, stack))
    finally:
        stop_process(gateway_proc)
        shutil.rmtree(tmp, ignore_errors=True)
    out["load_after"] = _loadavg()
    runs = out["runs"]
    out["ratios"] = {
        f"C={a['concurrency']}: {b['replicas']}/{a['replicas']} replicas": ratio(
            b["polls_per_s"], a["polls_per_s"]
        )
        for a, b in zip(runs, runs[1:], strict=False)
        if a["concurrency"] == b["concurrency"]
    }
    return out


def render(result: dict[str, Any]) -> str:
    if "skipped" in result:
        return f"scale run: skipped ({result['skipped']})"
    lines = [
        f"scale run (PostgreSQL, {result['rows']:,} payments, {result['due']:,} due; gateway "
        f"{result['latency_s'] * 1000:.0f} ms; C calls in flight per replica; "
        f"{result['window_s']:g} s windows; loaded in {result.get('load_s')} s; "
        f"load average {result['load_before']} -> {result.get('load_after')})"
    ]
    ceiling = result.get("gateway_ceiling")
    if ceiling:
        lines.append(
            f"  fake gateway alone: {ceiling['requests_per_s']:.0f} req/s at "
            f"{ceiling['connections']} connections (limit {ceiling['limit_per_s']:.0f}, fraction "
            f"{ceiling['fraction']}), {ceiling['cpu_us_per_request']} us CPU per request"
        )
    for row in result["runs"]:
        cpu, claim = row["cpu_ms_per_poll"], row["claim"]
        conns = row["connections"]
        lines.append(
            f"  R={row['replicas']} C={row['concurrency']:<2}: {row['polls_per_s']:>7.1f} "
            "polls/s of a "
            f"{row['limit_per_s']:.0f}/s limit: fraction {row['fraction']:.3f}; binds: "
            f"{row['binds']} (machine busy {row['machine_busy']}, this run "
            f"{row['run_cores']} of {row['cores']} cores; all cores at this cost: "
            f"{row['cpu_ceiling_per_s']}/s)"
        )
        lines.append(
            f"       CPU per poll {cpu['service_total']} ms (replicas {cpu['replicas']}, "
            f"PostgreSQL {cpu['postgres']}; fake gateway {cpu['fake_gateway']})"
        )
        lines.append(
            f"       claim statement p50 {claim['statement_p50_ms']} ms, p99 "
            f"{claim['statement_p99_ms']} ms, max {claim['statement_max_ms']} ms; "
            f"claim_due call p99 {claim['call_p99_ms']} ms ({claim['claims']} payment claims, "
            f"{claim['rows_per_claim']} rows each; {claim['other_queue_claims']} of deliveries)"
        )
        lines.append(
            f"       connections open {conns['open_mean']} (max {conns['open_max']}), in use "
            f"{conns['in_use_mean']} (max {conns['in_use_max']}); polled twice at once: "
            f"{row['double_polls']}"
        )
        per = row["per_poll"]
        lines.append(
            f"       per poll: {per.get('commits')} commits, {per.get('updated')} rows updated, "
            f"{per.get('inserted')} inserted, {per.get('wal_bytes')} WAL bytes"
        )
        sizes = row["sizes_after"]
        lines.append(
            f"       payments {sizes['payments_total_mb']} MB with indexes (heap "
            f"{sizes['payments_heap_mb']} MB, due index {sizes['due_index_mb']} MB); timeline "
            f"{sizes['events']} events, {sizes['bytes_per_event']} bytes each"
        )
    for key, value in result["ratios"].items():
        lines.append(f"  ratio polls/s {key}: {value}")
    return "\n".join(lines)
