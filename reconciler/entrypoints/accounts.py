"""Gateway accounts: `/admin/gateway_accounts` (operators) and `/v1/gateway_accounts`."""

from __future__ import annotations

from flask import Blueprint, url_for

from reconciler.adapters.models import GatewayAccount
from reconciler.entrypoints.account_schemas import (
    Account,
    AccountFilter,
    AccountList,
    AccountRequest,
    AccountRotation,
    MerchantAccount,
    MerchantAccountList,
)
from reconciler.entrypoints.admin import authenticate_admin
from reconciler.entrypoints.merchant_auth import authenticate, ctx, merchant
from reconciler.entrypoints.routing import Answer, Routes
from reconciler.services import accounts

admin_bp = Blueprint("admin_accounts", __name__, url_prefix="/admin/gateway_accounts")
admin_routes = Routes(admin_bp, security="admin", not_found="No such gateway account")
admin_bp.before_request(authenticate_admin)

merchant_bp = Blueprint("gateway_accounts", __name__, url_prefix="/v1/gateway_accounts")
merchant_routes = Routes(merchant_bp, security="bearer")
merchant_bp.before_request(authenticate)

UNAVAILABLE = {503: "RECONCILER_SECRETS_KEY is not set: secrets cannot be stored"}


def _shown(account: GatewayAccount) -> Account:
    return Account.model_validate(
        {
            "id": account.id,
            "merchant_id": account.merchant_id,
            "gateway": account.gateway,
            "status": account.status,
            "webhook_path": accounts.webhook_path(account),
            "created_at": account.created_at,
        }
    )


@admin_routes.post(
    "",
    body=AccountRequest,
    ok={201: Answer(Account, "Added", headers=("Location",))},
    problems={404: "No such merchant", **UNAVAILABLE},
)
def create(body: AccountRequest) -> tuple[Account, int, dict[str, str]]:
    """Add a merchant's own account at a gateway (its secrets are stored encrypted)."""
    given = body.root
    account = accounts.create_account(
        ctx(),
        merchant_id=given.merchant_id,
        gateway=given.gateway,
        credentials=given.credentials.model_dump(),
        webhook_secret=given.webhook_secret,
    )
    location = url_for("admin_accounts.show", account_id=account.id)
    return _shown(account), 201, {"Location": location}


@admin_routes.get("", query=AccountFilter, ok={200: AccountList})
def list_accounts(query: AccountFilter) -> AccountList:
    """List gateway accounts, oldest first (of one merchant when asked)."""
    found = accounts.list_accounts(ctx(), query.merchant_id or None)
    return AccountList(data=[_shown(a) for a in found])


@admin_routes.get("/<account_id>", ok={200: Account})
def show(account_id: str) -> Account:
    """Show one gateway account (never its secrets)."""
    return _shown(accounts.get_account(ctx(), account_id))


@admin_routes.post(
    "/<account_id>/rotate", body=AccountRotation, ok={200: Account}, problems=UNAVAILABLE
)
def rotate(account_id: str, body: AccountRotation) -> Account:
    """Replace credentials and/or the webhook secret (the old secret verifies for 24 h)."""
    account = accounts.rotate_account(
        ctx(),
        account_id,
        credentials=(body.credentials.model_dump(exclude_none=True) if body.credentials else None),
        webhook_secret=body.webhook_secret,
    )
    return _shown(account)


@admin_routes.delete("/<account_id>", ok={200: Account})
def disable(account_id: str) -> Account:
    """Disable the account: no new payments on it; its pending ones are still reconciled."""
    return _shown(accounts.disable_account(ctx(), account_id))


@merchant_routes.get("", ok={200: MerchantAccountList})
def own_accounts() -> MerchantAccountList:
    """List the merchant's own gateway accounts."""
    found = accounts.list_accounts(ctx(), merchant().id)
    return MerchantAccountList(
        data=[
            MerchantAccount.model_validate(
                {
                    "id": a.id,
                    "gateway": a.gateway,
                    "status": a.status,
                    "webhook_path": accounts.webhook_path(a),
                }
            )
            for a in found
        ]
    )
