"""`python -m bench [--quick] [--only NAME ...]`: run the benchmarks, print ratios, save JSON."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    adaptive,
    deliveries,
    economy,
    gateway_http,
    ingestion,
    lateness,
    polls,
    profiles,
    realistic,
    recording,
    scale,
    sweep_cost,
)
from reconciler.demo.stack import cleanup_on_sigterm

BENCHES = {
    "economy": economy,
    "economy-real": realistic,
    "sweep": sweep_cost,
    "webhooks": ingestion,
    "polls": polls,
    "lateness": lateness,
    "scale": scale,
    "deliveries": deliveries,
    "gateway-http": gateway_http,
    "adaptive": adaptive,
    "recording": recording,
    # Profiles run only when asked for by name (--only), not in a plain `make bench`.
    "profile-poll": profiles.POLL,
    "profile-webhook": profiles.WEBHOOK,
    "profile-delivery": profiles.DELIVERY,
}
PROFILES = {"profile-poll", "profile-webhook", "profile-delivery"}
RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    memory = None
    try:
        with open("/proc/meminfo") as info:
            kib = int(info.readline().split()[1])
            memory = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "nproc": os.cpu_count(),
        "memory": memory,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the short version (make bench)")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHES), help="run only these")
    args = parser.parse_args(argv)
    cleanup_on_sigterm()
    names = args.only or [name for name in BENCHES if name not in PROFILES]
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine(),
    }
    failed = False
    for name in names:
        module = BENCHES[name]
        started = time.monotonic()
        try:
            result = module.run(args.quick)
        except Exception as exc:  # one broken benchmark must not hide the others
            failed = True
            print(f"{name}: FAILED: {type(exc).__name__}: {exc}", flush=True)
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        result["wall_s"] = round(time.monotonic() - started, 1)
        results[name] = result
        print(module.render(result), flush=True)
        print(flush=True)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{stamp}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"results written to {path}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
