"""Secrets at rest: gateway credentials and signing secrets sealed with Fernet keys.

`RECONCILER_SECRETS_KEY` holds one or more Fernet keys, comma-separated: the first
encrypts, every one decrypts (`MultiFernet`), so a new key is put first, everything is
re-encrypted (`reconciler secrets rotate`), and only then is the old key dropped.

A sealed value is stored as `fernet:<token>`; anything else is a secret an earlier
version stored in clear, read as it is until `seal_clear_secrets` encrypts it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

PREFIX = "fernet:"


class SecretsUnavailable(RuntimeError):
    """A secret cannot be sealed or opened: no key is configured, or none of them fits."""


def new_key() -> str:
    """Make a new Fernet key (urlsafe base64 of 32 random bytes)."""
    return Fernet.generate_key().decode()


def is_sealed(stored: str) -> bool:
    """Say whether a stored value is encrypted (not a clear value of an earlier version)."""
    return stored.startswith(PREFIX)


OPENED_KEPT = 4096  # opened secrets kept in memory at most


class SecretBox:
    """Seal and open secrets with the configured keys; without keys nothing can be sealed."""

    def __init__(self, keys: Sequence[str] = ()) -> None:
        fernets = []
        for number, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.encode()))
            except (ValueError, TypeError):
                raise SecretsUnavailable(
                    f"RECONCILER_SECRETS_KEY: key {number} is not a Fernet key "
                    "(32 url-safe base64-encoded bytes; `reconciler secrets new-key` makes one)"
                ) from None
        self._fernet = MultiFernet(fernets) if fernets else None
        # What sealed values opened to, so a delivery does not decrypt its endpoint's secret
        # on every attempt (bounded: endpoints are few; the keys never change in a process).
        self._opened: dict[str, str] = {}

    @property
    def enabled(self) -> bool:
        return self._fernet is not None

    def _keys(self) -> MultiFernet:
        if self._fernet is None:
            raise SecretsUnavailable(
                "RECONCILER_SECRETS_KEY is not set: secrets cannot be stored "
                "(`reconciler secrets new-key` makes a key)"
            )
        return self._fernet

    def seal(self, secret: str) -> str:
        """Encrypt a secret with the first key, for storing."""
        return PREFIX + self._keys().encrypt(secret.encode()).decode()

    def open(self, stored: str) -> str:
        """Return the secret a stored value holds (a clear value of an earlier version as is)."""
        if not is_sealed(stored):
            return stored
        known = self._opened.get(stored)
        if known is not None:
            return known
        try:
            secret = self._keys().decrypt(stored[len(PREFIX) :].encode()).decode()
        except InvalidToken:
            raise SecretsUnavailable(
                "a stored secret was encrypted with a key that is not in RECONCILER_SECRETS_KEY"
            ) from None
        if len(self._opened) >= OPENED_KEPT:
            self._opened.clear()
        self._opened[stored] = secret
        return secret

    def open_all(self, stored: Iterable[str]) -> tuple[str, ...]:
        return tuple(self.open(value) for value in stored)

    def reseal(self, stored: str) -> str:
        """Re-encrypt a stored value with the first key (a clear value is sealed)."""
        if not is_sealed(stored):
            return self.seal(stored)
        try:
            return PREFIX + self._keys().rotate(stored[len(PREFIX) :].encode()).decode()
        except InvalidToken:
            raise SecretsUnavailable(
                "a stored secret was encrypted with a key that is not in RECONCILER_SECRETS_KEY"
            ) from None
