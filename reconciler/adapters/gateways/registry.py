"""One adapter per gateway account, built on first use and rebuilt when the account changes.

The environment's credentials are the `default` account of each gateway (the adapters
the composition root built); every other account's adapter is built from its row, with
its credentials opened from their sealed form. An adapter is cached under the account's
id and `updated_at`, so a rotation is seen at the next call, and while a rotated-out
webhook secret still verifies the cache key says so too.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from reconciler.adapters.gateways.base import Gateway
from reconciler.adapters.models import DEFAULT_ACCOUNT, GatewayAccount
from reconciler.adapters.repository.accounts import gateway_account
from reconciler.adapters.secrets import SecretBox
from reconciler.config import GatewayConfig

Build = Callable[[GatewayConfig], Gateway]


@dataclass(frozen=True)
class AccountSecrets:
    """An account's credentials and webhook secrets, opened."""

    api_key: str | None
    api_secret: str | None
    webhook_secrets: tuple[str, ...]


def open_account(box: SecretBox, account: GatewayAccount, now: datetime) -> AccountSecrets:
    """Open an account's sealed credentials; the previous webhook secret while it is valid."""
    credentials = json.loads(box.open(account.credentials))
    secrets = [box.open(account.webhook_secret)]
    expires = account.previous_secret_expires_at
    if account.previous_webhook_secret and expires is not None and now < expires:
        secrets.append(box.open(account.previous_webhook_secret))
    return AccountSecrets(
        api_key=credentials.get("api_key") or credentials.get("key_id"),
        api_secret=credentials.get("key_secret"),
        webhook_secrets=tuple(secrets),
    )


class AdapterRegistry:
    """Hand out the adapter of a gateway account (`default`: the environment's)."""

    def __init__(
        self,
        defaults: dict[str, Gateway],
        *,
        sessions: sessionmaker[Session],
        box: SecretBox,
        base: Callable[[str], GatewayConfig],
        build: Build,
    ) -> None:
        self.defaults = defaults
        self._sessions = sessions
        self._box = box
        self._base = base
        self._build = build
        self._cache: dict[str, tuple[object, Gateway]] = {}
        self._lock = threading.Lock()
        self.wrap: Callable[[Gateway], Gateway] | None = None  # e.g. timing, for metrics

    def get(self, gateway: str, account_id: str, now: datetime) -> Gateway | None:
        """Return the adapter of one account of one gateway; None if there is none."""
        if account_id == DEFAULT_ACCOUNT:
            return self.defaults.get(gateway)
        with self._sessions() as session:
            account = gateway_account(session, account_id)
            if account is None or account.gateway != gateway:
                return None
            expires = account.previous_secret_expires_at
            version = (account.updated_at, expires is not None and now < expires)
            with self._lock:
                cached = self._cache.get(account_id)
            if cached is not None and cached[0] == version:
                return cached[1]
            opened = open_account(self._box, account, now)
        config = replace(
            self._base(gateway),
            api_key=opened.api_key,
            api_secret=opened.api_secret,
            webhook_secrets=opened.webhook_secrets,
        )
        adapter = self._build(config)
        if self.wrap is not None:
            adapter = self.wrap(adapter)
        with self._lock:
            self._cache[account_id] = (version, adapter)
        return adapter
