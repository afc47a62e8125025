"""The `reconciler` command line (click): parse, load settings, call one command."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import click

from reconciler import __version__
from reconciler.config import PREFIX, ConfigError, Settings, known_variables, spec
from reconciler.config_checks import unknown_variables
from reconciler.entrypoints.cli_accounts import account, secrets
from reconciler.services.merchants import ROTATION_GRACE
from reconciler.services.retention import MIN_RETENTION_DAYS
from reconciler.simulator.cli import simulator

F = TypeVar("F", bound=Callable[..., Any])
CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True}


def settings() -> Settings:
    """Read the settings from the environment; a bad value ends the command with exit 2.

    A `RECONCILER_*` variable no setting reads (a typo) is warned about, naming the closest.
    """
    from reconciler.adapters.secrets import SecretBox, SecretsUnavailable

    try:
        loaded = Settings.from_env()
        SecretBox(loaded.secrets_key)  # a key that is not a Fernet key stops here
    except (ConfigError, SecretsUnavailable) as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)
    for line in unknown_variables(os.environ, PREFIX, known_variables()):
        click.echo(f"configuration warning: {line}", err=True)
    return loaded


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """End the command with one line and exit 2 on an operator's mistake, not a traceback."""
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import ArgumentError, OperationalError

    try:
        yield
    except CommandError as exc:
        click.echo(f"migration error: {exc}", err=True)
        sys.exit(2)
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)
    except (OperationalError, ArgumentError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        click.echo(f"database error: cannot use RECONCILER_DATABASE_URL: {reason}", err=True)
        sys.exit(2)


def setting_option(flag: str, name: str, value_type: Any) -> Callable[[F], F]:
    """An option overriding one setting; its help quotes the setting's variable and default."""
    declared = spec(name)
    return click.option(
        flag,
        name,
        type=value_type,
        default=None,
        show_default=False,
        help=f"{declared.help}  [env var: {declared.env}; default: {declared.default}]",
    )


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "--version", "-V", prog_name="reconciler")
def cli() -> None:
    """Payment status reconciliation: webhooks first, backoff polling for the rest.

    Every setting is a RECONCILER_* environment variable (see README, Configuration).
    """


@cli.command()
@setting_option("--host", "host", str)
@setting_option("--port", "port", click.IntRange(0, 65535))
def serve(host: str | None, port: int | None) -> None:
    """Migrate the database if needed, then serve the API with the sweep in-process."""
    from reconciler.entrypoints import commands

    with one_line_errors():
        code = commands.serve(settings(), host=host, port=port)
    sys.exit(code)


@cli.group()
def db() -> None:
    """Database migrations and retention."""


@db.command()
def upgrade() -> None:
    """Run the Alembic migrations to head."""
    from reconciler.entrypoints import commands

    with one_line_errors():
        commands.upgrade(settings())
    click.echo("database at head")


@db.command(context_settings={"ignore_unknown_options": True})
@click.argument("revision")
def downgrade(revision: str) -> None:
    """Migrate down to REVISION (e.g. 0006, or -1): before rolling back to an older release."""
    from reconciler.entrypoints import commands

    with one_line_errors():
        now = commands.downgrade(settings(), revision)
    click.echo(f"database at {now}")


@db.command()
@click.option(
    "--older-than-days",
    type=int,
    required=True,
    help=f"retention in days (at least {MIN_RETENTION_DAYS}: gateways redeliver for days)",
)
def prune(older_than_days: int) -> None:
    """Delete processed webhook bodies older than a retention period."""
    from reconciler.entrypoints import commands

    with one_line_errors():
        code = commands.prune(settings(), older_than_days)
    sys.exit(code)


@cli.group()
def merchant() -> None:
    """Create, list merchants and rotate their API keys."""


@merchant.command("create")
@click.argument("name")
def merchant_create(name: str) -> None:
    """Create a merchant NAME; its API key is the last line printed (shown once)."""
    from reconciler.entrypoints import commands

    with one_line_errors():
        code = commands.create_merchant(settings(), name)
    sys.exit(code)


@merchant.command("list")
def merchant_list() -> None:
    """List merchants (id, name, created at), oldest first."""
    from reconciler.entrypoints import commands

    with one_line_errors():
        code = commands.list_merchants(settings())
    sys.exit(code)


@merchant.command("rotate-key")
@click.argument("name")
@click.option(
    "--grace-hours",
    type=click.FloatRange(min=0),
    default=ROTATION_GRACE.total_seconds() / 3600,
    help="hours the old key keeps working; 0 revokes it at once (a leaked key)",
)
def merchant_rotate_key(name: str, grace_hours: float) -> None:
    """Give merchant NAME (or id) a new API key, printed last; the old one works for a while."""
    from reconciler.entrypoints import commands

    grace = timedelta(hours=grace_hours)
    with one_line_errors():
        code = commands.rotate_merchant_key(settings(), name, grace)
    sys.exit(code)


@cli.command()
@click.option("--once", is_flag=True, help="accepted for compatibility: a sweep always runs once")
def sweep(once: bool) -> None:
    """Run one sweep, print its report as JSON, then exit (cron-style deployments)."""
    from reconciler.entrypoints import commands

    with one_line_errors():
        code = commands.sweep_once(settings())
    sys.exit(code)


cli.add_command(simulator)
cli.add_command(account)
cli.add_command(secrets)


@cli.command()
@click.option(
    "--secret", required=True, help="The endpoint's whsec_… secret, to verify deliveries."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port", type=int, default=8200, show_default=True, help="Port to bind; 0 picks a free one."
)
@click.option(
    "--fail-rate",
    type=float,
    default=0.0,
    show_default=True,
    help="Share of deliveries to answer with --status, on purpose (0-1), to watch retries.",
)
@click.option(
    "--status", type=int, default=503, show_default=True, help="Status of a failed answer."
)
@click.option(
    "--retry-after",
    type=int,
    default=None,
    help="Retry-After seconds sent with it (default: none).",
)
@click.option(
    "--delay",
    type=float,
    default=0.0,
    show_default=True,
    help="Seconds to wait before answering (past the timeout: a slow endpoint).",
)
@click.option(
    "--drip",
    type=float,
    default=0.0,
    show_default=True,
    help="Send the answer's body one byte every this many seconds (a hostile receiver).",
)
@click.option(
    "--hang",
    type=float,
    default=0.0,
    show_default=True,
    help="Stall this many seconds after the answer's headers (a hostile receiver).",
)
@click.option(
    "--seed", type=int, default=None, help="Random seed for --fail-rate (default: random)."
)
def listen(**options: Any) -> None:
    """Receive deliveries locally: verify each signature, print it, answer 200."""
    from reconciler.entrypoints import listen as listener

    try:
        parsed = listener.ListenOptions(**options)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    sys.exit(listener.listen(parsed))


@cli.command(
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def demo(args: tuple[str, ...]) -> None:
    """Simulator + service + traffic on this machine, scored (`reconciler demo --help`)."""
    from reconciler import demo as demo_module

    parser = argparse.ArgumentParser(prog="reconciler demo", description=demo_module.__doc__)
    demo_module.add_arguments(parser)
    sys.exit(demo_module.run(parser.parse_args(args)))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return its exit code."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="reconciler")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
