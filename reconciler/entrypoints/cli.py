"""The `reconciler` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from reconciler.config import ConfigError, Settings
from reconciler.services.retention import MIN_RETENTION_DAYS


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reconciler", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="migrate, then serve the API with the sweep")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)

    db = commands.add_parser("db", help="database migrations and retention")
    db_actions = db.add_subparsers(dest="action", required=True)
    db_actions.add_parser("upgrade", help="Alembic migrations to head")
    prune = db_actions.add_parser(
        "prune", help="delete processed webhook bodies older than a retention period"
    )
    prune.add_argument(
        "--older-than-days",
        type=int,
        required=True,
        help=f"retention in days (at least {MIN_RETENTION_DAYS}: gateways redeliver for days)",
    )

    merchant = commands.add_parser("merchant", help="manage merchants")
    merchant.add_argument("action", choices=["create"])
    merchant.add_argument("name")

    sweep = commands.add_parser("sweep", help="run the sweep")
    sweep.add_argument("--once", action="store_true", required=True, help="one sweep, then exit")

    from reconciler.simulator import cli as simulator_cli

    simulator = commands.add_parser("simulator", help="run the flaky gateway simulator")
    simulator_cli.add_arguments(simulator)

    from reconciler import demo

    demo_parser = commands.add_parser("demo", help="simulator + service + traffic, scored")
    demo.add_arguments(demo_parser)

    from reconciler.entrypoints import listen

    listen.add_arguments(commands.add_parser("listen", help="verify and print deliveries locally"))

    args = parser.parse_args(argv)
    try:
        if args.command == "simulator":
            return simulator_cli.run(args)
        if args.command == "demo":
            return demo.run(args)
        if args.command == "listen":
            return listen.run(args)
        settings = Settings.from_env()
        from reconciler.entrypoints import commands as run

        if args.command == "serve":
            return run.serve(settings, host=args.host, port=args.port)
        if args.command == "db" and args.action == "prune":
            return run.prune(settings, args.older_than_days)
        if args.command == "db":
            run.upgrade(settings)
            print("database at head")
            return 0
        if args.command == "merchant":
            return run.create_merchant(settings, args.name)
        return run.sweep_once(settings)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
