"""The `reconciler simulator` command: flags to `SimConfig`, then serve until interrupted."""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import signal
import sys
import threading
from types import FrameType
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server

from reconciler.simulator.app import Simulator, create_app
from reconciler.simulator.config import SimConfig, parse_outage, parse_outcomes


def _outcomes(text: str) -> tuple[tuple[str, float], ...]:
    try:
        return parse_outcomes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _outage(text: str) -> tuple[float, float]:
    try:
        return parse_outage(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's flags to a parser."""
    d = SimConfig()
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    add("--port", type=int, default=8100, help="port to bind; 0 picks a free one (default 8100)")
    add("--seed", type=int, default=None, help="random seed, for reproducible runs")
    add("--webhook-url", default=None, help="where to POST signed webhooks")
    add(
        "--webhook-secret",
        default=os.environ.get("RECONCILER_SIMULATOR_WEBHOOK_SECRET") or None,
        help="whsec_… signing secret (default $RECONCILER_SIMULATOR_WEBHOOK_SECRET)",
    )
    add("--api-key", default=None, help="require `Authorization: Bearer KEY` on /v1")
    add("--settle-min", type=float, default=d.settle_min_s, help="seconds to settle, min")
    add("--settle-max", type=float, default=d.settle_max_s, help="seconds to settle, max")
    add(
        "--outcomes",
        type=_outcomes,
        default=d.outcomes,
        help="terminal odds, e.g. succeeded=0.8,failed=0.15,canceled=0.05",
    )
    add("--requires-action", type=float, default=d.p_requires_action, help="P(requires_action)")
    add("--latency-min", type=float, default=d.latency_min_s, help="added latency, min s")
    add("--latency-max", type=float, default=d.latency_max_s, help="added latency, max s")
    add("--p-5xx", type=float, default=d.p_5xx, help="P(answer 500/502/503)")
    add("--p-429", type=float, default=d.p_429, help="P(answer 429)")
    add("--retry-after", type=int, default=d.retry_after_s, help="Retry-After seconds on 429")
    add("--p-hang", type=float, default=d.p_hang, help="P(hang before answering)")
    add("--hang-s", type=float, default=d.hang_s, help="how long a hang lasts (default 30)")
    add(
        "--outage",
        type=_outage,
        action="append",
        default=[],
        metavar="START:DURATION",
        help="every /v1 call answers 503 in this window (s after start); repeatable",
    )
    add("--webhook-loss", type=float, default=d.p_webhook_loss, help="P(event never sent)")
    add("--webhook-duplicate", type=float, default=d.p_webhook_duplicate, help="P(sent twice)")
    add("--webhook-reorder", type=float, default=d.p_webhook_reorder, help="P(held back)")
    add("--webhook-delay-max", type=float, default=d.webhook_delay_max_s, help="max delay, s")
    add("--webhook-attempts", type=int, default=d.webhook_max_attempts, help="delivery attempts")
    add("--no-webhooks", action="store_true", help="send no webhooks at all")
    add("--verbose", action="store_true", help="log every request")


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """Build a `SimConfig` from parsed flags."""
    secret = args.webhook_secret
    if args.webhook_url and not secret:
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        print(f"simulator webhook secret: {secret}", flush=True)
    return SimConfig(
        seed=args.seed,
        api_key=args.api_key,
        settle_min_s=args.settle_min,
        settle_max_s=args.settle_max,
        outcomes=tuple(args.outcomes),
        p_requires_action=args.requires_action,
        latency_min_s=args.latency_min,
        latency_max_s=max(args.latency_max, args.latency_min),
        p_5xx=args.p_5xx,
        p_429=args.p_429,
        retry_after_s=args.retry_after,
        p_hang=args.p_hang,
        hang_s=args.hang_s,
        outages=tuple(args.outage),
        webhook_url=args.webhook_url,
        webhook_secret=secret,
        webhooks_enabled=not args.no_webhooks,
        p_webhook_loss=args.webhook_loss,
        p_webhook_duplicate=args.webhook_duplicate,
        p_webhook_reorder=args.webhook_reorder,
        webhook_delay_max_s=args.webhook_delay_max,
        webhook_max_attempts=args.webhook_attempts,
    )


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def run(args: argparse.Namespace) -> int:
    """Serve the simulator until SIGINT or SIGTERM."""
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    app = create_app(config)
    handler = WSGIRequestHandler if args.verbose else _QuietHandler
    server = make_server(args.host, args.port, app, threaded=True, request_handler=handler)

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever to return, so it must not run on its thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"simulator listening on http://{args.host}:{server.port}", flush=True)
    try:
        server.serve_forever()
    finally:
        sim: Simulator = app.extensions["simulator"]
        sim.dispatcher.stop()
        server.server_close()
    return 0
