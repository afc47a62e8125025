"""`reconciler demo`'s flags and its run: start the stack, drive traffic, score, report."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from reconciler.demo.plot import PlotUnavailable, draw
from reconciler.demo.profile import Profile
from reconciler.demo.progress import Progress
from reconciler.demo.report import render
from reconciler.demo.scoring import Collected, collect, exit_code, score
from reconciler.demo.stack import Stack, cleanup_on_sigterm, run_stack
from reconciler.demo.traffic import (
    Endpoint,
    OutageTimer,
    create_payments,
    merchant_endpoint,
    wait_delivered,
    wait_settled,
)


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
    add(
        "--no-notifications",
        action="store_true",
        help="register no merchant endpoint (no outbound notifications)",
    )
    add("--endpoint-503", type=float, default=d.endpoint_p_503, help="P(endpoint answers 503)")
    add(
        "--endpoint-slow",
        type=float,
        default=d.endpoint_p_slow,
        help="P(endpoint answers after the delivery timeout)",
    )
    add(
        "--endpoint-outage-at",
        type=float,
        default=d.endpoint_outage_at_s,
        help="endpoint outage start, s after traffic",
    )
    add(
        "--endpoint-outage",
        type=float,
        default=d.endpoint_outage_s,
        help="endpoint outage length in s; 0 for none",
    )
    add("--timeout", type=float, default=d.timeout_s, help="give up waiting after this many s")
    add(
        "--plot",
        metavar="FILE.png",
        default=None,
        help="draw staleness and poll timing (needs the extra: pip install 'reconciler[plot]')",
    )
    add("--json", action="store_true", help="also print the report as JSON")


def profile_from(args: argparse.Namespace) -> Profile:
    """Build the run's profile from the command line."""
    return Profile(
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
        notifications=not args.no_notifications,
        endpoint_p_503=args.endpoint_503,
        endpoint_p_slow=args.endpoint_slow,
        endpoint_outage_at_s=args.endpoint_outage_at,
        endpoint_outage_s=args.endpoint_outage,
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo; exit 1 if a payment is wrong or a notification lost, 3 if unsettled."""
    cleanup_on_sigterm()
    profile = profile_from(args)
    if profile.payments < 1:
        print("demo: --payments must be at least 1", file=sys.stderr)
        return 2
    shares = (profile.endpoint_p_503, profile.endpoint_p_slow)
    if min(shares) < 0 or sum(shares) > 1:
        print(
            "demo: --endpoint-503 and --endpoint-slow are shares summing to 1 at most",
            file=sys.stderr,
        )
        return 2
    print("starting the gateway simulator and the service on loopback...", file=sys.stderr)
    try:
        with run_stack(profile) as stack, merchant_endpoint(stack, profile) as endpoint:
            return _drive(stack, profile, args, endpoint)
    except RuntimeError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ndemo interrupted; both processes stopped", file=sys.stderr)
        return 130


def _drive(
    stack: Stack, profile: Profile, args: argparse.Namespace, endpoint: Endpoint | None
) -> int:
    hooks = f", merchant endpoint {endpoint.url}" if endpoint else ""
    print(
        f"simulator {stack.simulator_url}, service {stack.service_url}{hooks}; "
        f"creating {profile.payments} payments",
        file=sys.stderr,
    )
    t0 = datetime.now(UTC)
    started = time.monotonic()
    if endpoint is not None:
        endpoint.receiver.begin()
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
    if not settled:
        print(f"timed out after {profile.timeout_s:g} s; scoring what settled", file=sys.stderr)
    elif endpoint is not None and not wait_delivered(
        stack, endpoint, started + profile.timeout_s, started
    ):
        print(f"timed out after {profile.timeout_s:g} s; deliveries pending", file=sys.stderr)
    elapsed = time.monotonic() - started
    data = collect(
        stack,
        endpoint_id=endpoint.id if endpoint else None,
        receipts=endpoint.receiver.receipts if endpoint else None,
    )
    report = score(data, outage.state if outage else None)
    report["elapsed_s"] = round(elapsed, 3)
    report["profile"] = asdict(profile)
    return conclude(report, data, profile, args, t0)


def conclude(
    report: dict[str, Any],
    data: Collected,
    profile: Profile,
    args: argparse.Namespace,
    t0: datetime | None,
) -> int:
    """Print the report (text, then JSON if asked), draw the plot and return the exit code.

    A missing plot extra is said, not failed: the exit code speaks of the payments and
    notifications only.
    """
    print(render(report, profile, report["elapsed_s"]))
    if args.plot:
        try:
            draw(args.plot, report, data, profile, t0)
        except PlotUnavailable as exc:
            print(f"demo: no plot written: {exc}", file=sys.stderr)
        else:
            print(f"plot written to {args.plot}", file=sys.stderr)
    if args.json:
        print(json.dumps({k: v for k, v in report.items() if k != "staleness_samples"}, indent=2))
    return exit_code(report)
