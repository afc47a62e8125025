"""Secrets at rest: sealed with the first key, opened with any, re-encrypted on rotation."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.app import SECRETS_KEY, make_settings
from support.clock import FakeClock

from reconciler.adapters.models import WebhookEndpoint
from reconciler.adapters.secrets import SecretBox, SecretsUnavailable, is_sealed, new_key
from reconciler.bootstrap import Context, bootstrap
from reconciler.config import Settings
from reconciler.services.merchants import create_merchant
from reconciler.services.secrets import rotate_secrets, seal_clear_secrets

CLEAR = "whsec_c2VjcmV0LXN0b3JlZC1pbi1jbGVhci1ieS1hbi1lYXJsaWVy"


def test_the_first_key_seals_and_every_key_opens() -> None:
    old, new = new_key(), new_key()
    sealed_old = SecretBox([old]).seal("s3cret")
    both = SecretBox([new, old])
    assert both.open(sealed_old) == "s3cret"
    assert SecretBox([new]).open(both.seal("s3cret")) == "s3cret"
    assert SecretBox([new]).open(both.reseal(sealed_old)) == "s3cret"
    with pytest.raises(SecretsUnavailable):
        SecretBox([new]).open(sealed_old)
    with pytest.raises(SecretsUnavailable, match="RECONCILER_SECRETS_KEY"):
        SecretBox().seal("s3cret")
    with pytest.raises(SecretsUnavailable, match="key 1 is not a Fernet key"):
        SecretBox(["not-a-key"])


@pytest.fixture
def stored(db_url: str, clock: FakeClock) -> Iterator[tuple[Context, str]]:
    """A database with one endpoint whose secret an earlier version stored in clear."""
    ctx = bootstrap(make_settings(db_url), clock=clock)
    merchant, _ = create_merchant(ctx, "acme")
    now = datetime(2026, 12, 1, tzinfo=UTC)
    with ctx.sessions.begin() as session:
        session.add(
            WebhookEndpoint(
                id="we_clear",
                merchant_id=merchant.id,
                url="https://example.com/hooks",
                events=["payment.succeeded"],
                status="enabled",
                secret=CLEAR,
                created_at=now,
                updated_at=now,
            )
        )
    yield ctx, db_url
    ctx.close()


def _secret(ctx: Context) -> str:
    with ctx.read() as session:
        return session.get_one(WebhookEndpoint, "we_clear").secret


def test_a_start_with_a_key_seals_secrets_stored_in_clear(stored: tuple[Context, str]) -> None:
    ctx, _ = stored
    assert seal_clear_secrets(ctx) == 1
    sealed = _secret(ctx)
    assert is_sealed(sealed) and CLEAR not in sealed
    assert ctx.secrets.open(sealed) == CLEAR
    assert seal_clear_secrets(ctx) == 0  # once only


def test_rotation_re_encrypts_everything_with_the_new_key(
    stored: tuple[Context, str], clock: FakeClock
) -> None:
    ctx, db_url = stored
    seal_clear_secrets(ctx)
    key = new_key()
    rotated = bootstrap(make_settings(db_url, secrets_key=f"{key},{SECRETS_KEY}"), clock=clock)
    try:
        assert rotate_secrets(rotated) == 1
        assert SecretBox([key]).open(_secret(rotated)) == CLEAR
    finally:
        rotated.close()


def test_the_cli_adds_an_account_and_rotates_the_key(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'cli.db'}"
    base = Settings(database_url=database, secrets_key=(SECRETS_KEY,)).child_env()

    def reconciler(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "reconciler.entrypoints.cli", *args],
            env={**base, **env},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert reconciler("merchant", "create", "acme").returncode == 0
    (tmp_path / "key").write_text("sk_test_cli_key\n")
    (tmp_path / "whsec").write_text("whsec_cli_secret\n")
    added = reconciler(
        "account",
        "add",
        "acme",
        "--gateway",
        "stripe",
        "--api-key-file",
        "key",
        "--webhook-secret-file",
        "whsec",
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip().splitlines()[-1].startswith("/webhooks/stripe/gwa_")
    listed = reconciler("account", "list", "acme")
    assert "stripe  active" in listed.stdout
    new = new_key()
    rotated = reconciler("secrets", "rotate", RECONCILER_SECRETS_KEY=f"{new},{SECRETS_KEY}")
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.startswith("2 stored secrets")
    keyless = reconciler(
        "account",
        "add",
        "acme",
        "--gateway",
        "stripe",
        "--api-key-file",
        "key",
        "--webhook-secret-file",
        "whsec",
        RECONCILER_SECRETS_KEY="",
    )
    assert keyless.returncode == 1
    assert keyless.stderr.strip().count("\n") == 0
    assert "RECONCILER_SECRETS_KEY is not set" in keyless.stderr
    raw = (tmp_path / "cli.db").read_bytes()
    assert b"sk_test_cli_key" not in raw and b"whsec_cli_secret" not in raw


def test_a_key_that_is_not_a_fernet_key_is_a_configuration_error(tmp_path: Path) -> None:
    env = Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}").child_env()
    result = subprocess.run(
        [sys.executable, "-m", "reconciler.entrypoints.cli", "secrets", "rotate"],
        env={**env, "RECONCILER_SECRETS_KEY": "not-a-key"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("configuration error: RECONCILER_SECRETS_KEY: key 1")
