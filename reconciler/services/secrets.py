"""Secrets at rest: seal what is stored, re-encrypt everything with the newest key."""

from __future__ import annotations

import logging

from reconciler.adapters import repository
from reconciler.adapters.secrets import SecretsUnavailable, is_sealed
from reconciler.services.context import Context
from reconciler.services.errors import SecretsKeyMissing

log = logging.getLogger(__name__)


def seal(ctx: Context, secret: str) -> str:
    """Encrypt a secret for storing; without a key, refuse in one line."""
    try:
        return ctx.secrets.seal(secret)
    except SecretsUnavailable as exc:
        raise SecretsKeyMissing(str(exc)) from None


def reveal(ctx: Context, stored: str) -> str:
    """Return the secret a stored value holds."""
    return ctx.secrets.open(stored)


def rotate_secrets(ctx: Context, *, only_clear: bool = False) -> int:
    """Re-encrypt every stored secret with the first key; return how many values changed.

    With `only_clear`, seal only the values an earlier version stored in clear (what a
    start with a key does once). One transaction: a failure leaves everything as it was.
    """
    if not ctx.secrets.enabled:
        raise SecretsKeyMissing("RECONCILER_SECRETS_KEY is not set: nothing can be encrypted")
    changed = 0
    with ctx.sessions.begin() as session:
        for table, row_id, stored in list(repository.rows_with_secrets(session)):
            resealed = {
                column: ctx.secrets.reseal(value)
                for column, value in stored.items()
                if not (only_clear and is_sealed(value))
            }
            if resealed:
                repository.store_secrets(session, table, row_id, resealed)
                changed += len(resealed)
    if changed:
        log.info("stored secrets encrypted", extra={"count": changed, "only_clear": only_clear})
    return changed


def seal_clear_secrets(ctx: Context) -> int:
    """Encrypt secrets stored in clear by an earlier version (a start with a key calls it)."""
    if not ctx.secrets.enabled:
        return 0
    return rotate_secrets(ctx, only_clear=True)
