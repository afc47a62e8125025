"""The `reconciler simulator` command: flags to `SimConfig`, then serve until interrupted."""

from __future__ import annotations

import base64
import secrets
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import click
from flask import jsonify
from werkzeug.serving import WSGIRequestHandler, make_server

from reconciler.config import Settings, spec
from reconciler.simulator.app import Simulator, create_app
from reconciler.simulator.config import SimConfig, parse_outage, parse_outcomes

IDENTITY_PATH = "/_sim/identity"


def _parsed(parse: Callable[[str], Any]) -> Callable[[Any, Any, Any], Any]:
    def convert(ctx: Any, param: Any, value: Any) -> Any:
        if value is None or not isinstance(value, str):
            return value
        try:
            return parse(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return convert


def _outages(ctx: Any, param: Any, values: tuple[str, ...]) -> tuple[tuple[float, float], ...]:
    convert = _parsed(parse_outage)
    return tuple(convert(ctx, param, v) for v in values)


_D = SimConfig()
_PORT = spec("simulator_port")
_SECRET = spec("simulator_webhook_secret")


@click.command(context_settings={"show_default": True})
@click.option("--host", default="127.0.0.1", help="address to bind")
@click.option(
    "--port",
    type=int,
    default=None,
    show_default=False,
    help=f"port to bind; 0 picks a free one  [env var: {_PORT.env}; default: {_PORT.default}]",
)
@click.option(
    "--seed", type=int, default=None, help="random seed, for reproducible runs  [default: random]"
)
@click.option(
    "--webhook-url", default=None, help="where to POST signed webhooks  [default: none, none sent]"
)
@click.option(
    "--webhook-secret",
    default=None,
    show_default=False,
    help=f"whsec_… signing secret  [env var: {_SECRET.env}; default: generated and printed "
    "when --webhook-url is set]",
)
@click.option(
    "--api-key",
    default=None,
    help="require `Authorization: Bearer KEY` on /v1  [default: none, no auth]",
)
@click.option(
    "--identity",
    default=None,
    help=f"a token {IDENTITY_PATH} answers with, so a caller knows the simulator is its own"
    "  [default: none]",
)
@click.option("--settle-min", type=float, default=_D.settle_min_s, help="seconds to settle, min")
@click.option("--settle-max", type=float, default=_D.settle_max_s, help="seconds to settle, max")
@click.option(
    "--outcomes",
    default=",".join(f"{k}={v:g}" for k, v in _D.outcomes),
    callback=_parsed(parse_outcomes),
    help="terminal odds",
)
@click.option(
    "--requires-action", type=float, default=_D.p_requires_action, help="P(requires_action)"
)
@click.option("--latency-min", type=float, default=_D.latency_min_s, help="added latency, min s")
@click.option("--latency-max", type=float, default=_D.latency_max_s, help="added latency, max s")
@click.option("--p-5xx", type=float, default=_D.p_5xx, help="P(answer 500/502/503)")
@click.option("--p-429", type=float, default=_D.p_429, help="P(answer 429)")
@click.option("--retry-after", type=int, default=_D.retry_after_s, help="Retry-After s on 429")
@click.option("--p-hang", type=float, default=_D.p_hang, help="P(hang before answering)")
@click.option("--hang-s", type=float, default=_D.hang_s, help="how long a hang lasts")
@click.option(
    "--outage",
    multiple=True,
    metavar="START:DURATION",
    callback=_outages,
    help="every /v1 call answers 503 in this window (s after start); repeatable  [default: none]",
)
@click.option("--webhook-loss", type=float, default=_D.p_webhook_loss, help="P(event never sent)")
@click.option(
    "--webhook-duplicate", type=float, default=_D.p_webhook_duplicate, help="P(sent twice)"
)
@click.option("--webhook-reorder", type=float, default=_D.p_webhook_reorder, help="P(held back)")
@click.option(
    "--webhook-delay-max", type=float, default=_D.webhook_delay_max_s, help="max delay, s"
)
@click.option(
    "--webhook-delay-median",
    type=float,
    default=None,
    help="log-normal webhook delays with this median, s (clipped to --webhook-delay-max if set)"
    "  [default: none: uniform up to --webhook-delay-max]",
)
@click.option(
    "--webhook-delay-sigma",
    type=float,
    default=_D.webhook_delay_sigma,
    help="sigma of the log of the webhook delay (with --webhook-delay-median)",
)
@click.option(
    "--webhook-attempts", type=int, default=_D.webhook_max_attempts, help="delivery attempts"
)
@click.option("--no-webhooks", is_flag=True, help="send no webhooks at all")
@click.option("--verbose", is_flag=True, help="log every request")
def simulator(**options: Any) -> None:
    """Run the flaky gateway simulator until SIGINT or SIGTERM."""
    try:
        settings = Settings.from_env()
        config = config_from_options(options, settings)
    except ValueError as exc:  # ConfigError included
        click.echo(f"simulator: {exc}", err=True)
        sys.exit(2)
    port = settings.simulator_port if options["port"] is None else options["port"]
    verbose, identity = options["verbose"], options["identity"]
    sys.exit(run(config, options["host"], port, verbose=verbose, identity=identity))


def config_from_options(options: dict[str, Any], settings: Settings) -> SimConfig:
    """Build a `SimConfig` from parsed flags; the secret defaults to the configured one."""
    secret = options["webhook_secret"] or next(iter(settings.simulator_webhook_secret), None)
    if options["webhook_url"] and not secret:
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        print(f"simulator webhook secret: {secret}", flush=True)
    return SimConfig(
        seed=options["seed"],
        api_key=options["api_key"],
        settle_min_s=options["settle_min"],
        settle_max_s=options["settle_max"],
        outcomes=tuple(options["outcomes"]),
        p_requires_action=options["requires_action"],
        latency_min_s=options["latency_min"],
        latency_max_s=max(options["latency_max"], options["latency_min"]),
        p_5xx=options["p_5xx"],
        p_429=options["p_429"],
        retry_after_s=options["retry_after"],
        p_hang=options["p_hang"],
        hang_s=options["hang_s"],
        outages=tuple(options["outage"]),
        webhook_url=options["webhook_url"],
        webhook_secret=secret,
        webhooks_enabled=not options["no_webhooks"],
        p_webhook_loss=options["webhook_loss"],
        p_webhook_duplicate=options["webhook_duplicate"],
        p_webhook_reorder=options["webhook_reorder"],
        webhook_delay_max_s=options["webhook_delay_max"],
        webhook_delay_median_s=options["webhook_delay_median"],
        webhook_delay_sigma=options["webhook_delay_sigma"],
        webhook_max_attempts=options["webhook_attempts"],
    )


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def run(
    config: SimConfig, host: str, port: int, *, verbose: bool = False, identity: str | None = None
) -> int:
    """Serve the simulator until SIGINT or SIGTERM."""
    app = create_app(config)
    # Who this simulator is: `make run` checks it before trusting a server on its port.
    app.add_url_rule(IDENTITY_PATH, "identity", lambda: jsonify(identity=identity))
    handler = WSGIRequestHandler if verbose else _QuietHandler
    server = make_server(host, port, app, threaded=True, request_handler=handler)

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever to return, so it must not run on its thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"simulator listening on http://{host}:{server.port}", flush=True)
    try:
        server.serve_forever()
    finally:
        sim: Simulator = app.extensions["simulator"]
        sim.dispatcher.stop()
        server.server_close()
    return 0
