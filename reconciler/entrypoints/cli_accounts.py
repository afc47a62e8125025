"""`reconciler account …` and `reconciler secrets …`: gateway accounts and keys at rest.

Secrets are read from files (or `-` for standard input), never from the command line,
where `ps` and shell history would keep them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from reconciler.config import Settings


def _settings() -> Settings:
    from reconciler.entrypoints.cli import settings

    return settings()


def _read_secret(path: str | None) -> str | None:
    if path is None:
        return None
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    return text.strip()


def _run(action: Callable[[Any], int]) -> None:
    """Run one use case with a context; a refusal is one line on stderr and exit 1."""
    from reconciler.adapters.secrets import SecretsUnavailable
    from reconciler.bootstrap import bootstrap
    from reconciler.entrypoints.commands import upgrade
    from reconciler.services.errors import ServiceError

    settings = _settings()
    upgrade(settings)
    try:
        ctx = bootstrap(settings, gateways={})
    except SecretsUnavailable as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    try:
        code = action(ctx)
    except (ServiceError, SecretsUnavailable) as exc:
        click.echo(f"error: {getattr(exc, 'detail', exc)}", err=True)
        code = 1
    finally:
        ctx.close()
    sys.exit(code)


def _credentials(
    api_key_file: str | None, key_id: str | None, key_secret_file: str | None
) -> dict[str, object] | None:
    given = {
        "api_key": _read_secret(api_key_file),
        "key_id": key_id,
        "key_secret": _read_secret(key_secret_file),
    }
    kept: dict[str, object] = {k: v for k, v in given.items() if v is not None}
    return kept or None


def _show(account: Any) -> str:
    from reconciler.services.accounts import webhook_path

    return (
        f"{account.id}  {account.merchant_id}  {account.gateway}  {account.status}  "
        f"{webhook_path(account)}"
    )


@click.group()
def account() -> None:
    """Merchants' own gateway accounts (credentials and webhook secrets, stored encrypted)."""


@account.command("add")
@click.argument("merchant")
@click.option("--gateway", required=True, type=click.Choice(["stripe", "razorpay", "simulator"]))
@click.option("--api-key-file", help="file holding the Stripe secret key (- for stdin)")
@click.option("--key-id", help="Razorpay key id")
@click.option("--key-secret-file", help="file holding the Razorpay key secret (- for stdin)")
@click.option("--webhook-secret-file", required=True, help="file holding the webhook secret")
def account_add(
    merchant: str,
    gateway: str,
    api_key_file: str | None,
    key_id: str | None,
    key_secret_file: str | None,
    webhook_secret_file: str,
) -> None:
    """Add MERCHANT's (name or id) own account at a gateway; prints its webhook path."""
    from reconciler.services import accounts

    def add(ctx: Any) -> int:
        created = accounts.create_account(
            ctx,
            merchant_id=accounts.merchant_named(ctx, merchant),
            gateway=gateway,
            credentials=_credentials(api_key_file, key_id, key_secret_file) or {},
            webhook_secret=_read_secret(webhook_secret_file) or "",
        )
        click.echo(f"gateway account {created.id} added; point the {gateway} webhook at:")
        click.echo(accounts.webhook_path(created))
        return 0

    _run(add)


@account.command("list")
@click.argument("merchant", required=False)
def account_list(merchant: str | None) -> None:
    """List gateway accounts (id, merchant, gateway, status, webhook path), oldest first."""
    from reconciler.services import accounts

    def show(ctx: Any) -> int:
        owner = accounts.merchant_named(ctx, merchant) if merchant else None
        for found in accounts.list_accounts(ctx, owner):
            click.echo(_show(found))
        return 0

    _run(show)


@account.command("rotate")
@click.argument("account_id")
@click.option("--api-key-file", help="file holding the new Stripe secret key")
@click.option("--key-id", help="the new Razorpay key id")
@click.option("--key-secret-file", help="file holding the new Razorpay key secret")
@click.option("--webhook-secret-file", help="file holding the new webhook secret")
def account_rotate(
    account_id: str,
    api_key_file: str | None,
    key_id: str | None,
    key_secret_file: str | None,
    webhook_secret_file: str | None,
) -> None:
    """Replace an account's credentials and/or webhook secret (the old one verifies 24 h)."""
    from reconciler.services import accounts

    def rotate(ctx: Any) -> int:
        rotated = accounts.rotate_account(
            ctx,
            account_id,
            credentials=_credentials(api_key_file, key_id, key_secret_file),
            webhook_secret=_read_secret(webhook_secret_file),
        )
        click.echo(_show(rotated))
        return 0

    _run(rotate)


@click.group()
def secrets() -> None:
    """The keys that encrypt stored secrets (RECONCILER_SECRETS_KEY)."""


@secrets.command("rotate")
def secrets_rotate() -> None:
    """Re-encrypt every stored secret with the first key of RECONCILER_SECRETS_KEY."""
    from reconciler.services.secrets import rotate_secrets

    def rotate(ctx: Any) -> int:
        count = rotate_secrets(ctx)
        click.echo(f"{count} stored secrets encrypted with the first key")
        return 0

    _run(rotate)


@secrets.command("new-key")
def secrets_new_key() -> None:
    """Print a new Fernet key (put it first in RECONCILER_SECRETS_KEY, then rotate)."""
    from reconciler.adapters.secrets import new_key

    click.echo(new_key())
