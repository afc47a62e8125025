"""Gateway accounts: each merchant its own credentials and webhook secrets at a gateway.

The credentials configured by environment are the account `default` of each gateway; it
serves every merchant that has no account of its own there. Every secret an account
holds is sealed (`services.secrets`) before it is stored, and no answer carries one.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from datetime import timedelta

from sqlalchemy.orm import Session

from reconciler.adapters import repository
from reconciler.adapters.models import DEFAULT_ACCOUNT, GatewayAccount, Merchant
from reconciler.config import GATEWAYS
from reconciler.services import merchants
from reconciler.services.context import Context
from reconciler.services.errors import Conflict, GatewayUnavailable, NotFound, ValidationFailed
from reconciler.services.secrets import seal

ACTIVE, DISABLED = "active", "disabled"
# How long a rotated-out webhook secret keeps verifying: the gateway's dashboard and
# the service are switched one after the other, and deliveries in flight are signed
# with the old one.
ROTATION_OVERLAP = timedelta(hours=24)
# The credentials each gateway's account needs (`{}`: the simulator needs none).
CREDENTIAL_FIELDS: Mapping[str, tuple[str, ...]] = {
    "stripe": ("api_key",),
    "razorpay": ("key_id", "key_secret"),
    "simulator": (),
}
MAX_SECRET = 500


def webhook_path(account: GatewayAccount) -> str:
    """Say where the gateway sends this account's webhooks."""
    return f"/webhooks/{account.gateway}/{account.id}"


def _credentials(gateway: str, given: Mapping[str, object]) -> str:
    fields = CREDENTIAL_FIELDS[gateway]
    unknown = sorted(set(given) - set(fields))
    if unknown:
        raise ValidationFailed(
            f"{gateway} credentials take {', '.join(fields) or 'no fields'}; "
            f"unknown: {', '.join(unknown)}"
        )
    values = {}
    for name in fields:
        value = given.get(name)
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_SECRET:
            raise ValidationFailed(f"{gateway} credentials need {name} (1 to {MAX_SECRET} chars)")
        values[name] = value.strip()
    return json.dumps(values)


def _webhook_secret(secret: str) -> str:
    if not secret.strip() or len(secret) > MAX_SECRET or any(c in secret for c in ",\r\n"):
        raise ValidationFailed(
            f"webhook_secret must be 1 to {MAX_SECRET} characters, without commas or newlines"
        )
    return secret.strip()


def create_account(
    ctx: Context,
    *,
    merchant_id: str,
    gateway: str,
    credentials: Mapping[str, object],
    webhook_secret: str,
) -> GatewayAccount:
    """Add a merchant's own account at a gateway; its secrets are sealed before storing."""
    if gateway not in GATEWAYS:
        raise ValidationFailed(f"gateway must be one of: {', '.join(GATEWAYS)}")
    sealed_credentials = seal(ctx, _credentials(gateway, credentials))
    sealed_secret = seal(ctx, _webhook_secret(webhook_secret))
    now = ctx.clock()
    with ctx.sessions.begin() as session:
        if session.get(Merchant, merchant_id) is None:
            raise NotFound(f"no merchant {merchant_id}")
        account = GatewayAccount(
            id=f"gwa_{secrets.token_hex(12)}",
            merchant_id=merchant_id,
            gateway=gateway,
            status=ACTIVE,
            credentials=sealed_credentials,
            webhook_secret=sealed_secret,
            created_at=now,
            updated_at=now,
        )
        session.add(account)
    return account


def list_accounts(ctx: Context, merchant_id: str | None = None) -> Sequence[GatewayAccount]:
    """List accounts, oldest first (of one merchant when given)."""
    with ctx.read() as session:
        return repository.gateway_accounts(session, merchant_id=merchant_id)


def get_account(ctx: Context, account_id: str, *, merchant_id: str | None = None) -> GatewayAccount:
    """Return one account (for a merchant: only its own; another's is not found)."""
    with ctx.read() as session:
        account = repository.gateway_account(session, account_id)
    if account is None or (merchant_id is not None and account.merchant_id != merchant_id):
        raise NotFound(f"no gateway account {account_id}")
    return account


def rotate_account(
    ctx: Context,
    account_id: str,
    *,
    credentials: Mapping[str, object] | None = None,
    webhook_secret: str | None = None,
) -> GatewayAccount:
    """Replace credentials and/or the webhook secret; the old secret verifies for 24 h."""
    if credentials is None and webhook_secret is None:
        raise ValidationFailed("give credentials, webhook_secret or both")
    now = ctx.clock()
    with ctx.sessions.begin() as session:
        account = repository.gateway_account(session, account_id, for_update=True)
        if account is None:
            raise NotFound(f"no gateway account {account_id}")
        if credentials is not None:
            account.credentials = seal(ctx, _credentials(account.gateway, credentials))
        if webhook_secret is not None:
            sealed = seal(ctx, _webhook_secret(webhook_secret))
            account.previous_webhook_secret = account.webhook_secret
            account.previous_secret_expires_at = now + ROTATION_OVERLAP
            account.webhook_secret = sealed
        account.updated_at = now
    return account


def disable_account(ctx: Context, account_id: str) -> GatewayAccount:
    """Take no new payments on the account; its pending payments are still reconciled."""
    with ctx.sessions.begin() as session:
        account = repository.gateway_account(session, account_id, for_update=True)
        if account is None:
            raise NotFound(f"no gateway account {account_id}")
        if account.status != DISABLED:
            account.status = DISABLED
            account.updated_at = ctx.clock()
    return account


def account_for_payment(
    ctx: Context, session: Session, merchant_id: str, gateway: str, named: str | None
) -> str:
    """Choose the account a new payment lives in: the one named, else the merchant's only
    active one at that gateway, else `default`. Another merchant's account is not found."""
    if named == DEFAULT_ACCOUNT:
        return _default(ctx, gateway)
    if named is not None:
        account = repository.gateway_account(session, named)
        if account is None or account.merchant_id != merchant_id:
            raise NotFound(f"no gateway account {named}")
        if account.gateway != gateway:
            raise ValidationFailed(f"gateway account {named} is a {account.gateway} account")
        if account.status != ACTIVE:
            raise Conflict(f"gateway account {named} is disabled: it takes no new payments")
        return account.id
    own = [
        a
        for a in repository.gateway_accounts(session, merchant_id=merchant_id, gateway=gateway)
        if a.status == ACTIVE
    ]
    if len(own) == 1:
        return own[0].id
    # None of its own, or several (then the merchant names one): the shared account.
    return _default(ctx, gateway, several=len(own) > 1)


def _default(ctx: Context, gateway: str, *, several: bool = False) -> str:
    if not ctx.can_register(gateway):
        if several:
            raise GatewayUnavailable(
                f"several active {gateway} accounts and no default one: name one in gateway_account"
            )
        raise GatewayUnavailable(
            f"gateway {gateway!r} is not configured on this service "
            f"(set its RECONCILER_{gateway.upper()}_* credentials, or add a gateway account)"
        )
    return DEFAULT_ACCOUNT


def merchant_named(ctx: Context, name_or_id: str) -> str:
    """Return the id of the one merchant with this id or name."""
    with ctx.read() as session:
        return merchants.one_named(session, name_or_id).id
