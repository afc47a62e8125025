"""The environment the demo gives its child processes, read back as the service reads it."""

from __future__ import annotations

from reconciler.config import Settings
from reconciler.demo.profile import Profile
from reconciler.demo.stack import child_env


def test_the_callers_own_settings_do_not_leak_into_a_child() -> None:
    base = {"RECONCILER_DATABASE_URL": "sqlite:///mine.db", "RECONCILER_PORT": "8000"}
    env = child_env(base=base | {"PATH": "/usr/bin", "HOME": "/home/me"})

    assert env == {"PATH": "/usr/bin", "HOME": "/home/me", "PYTHONUNBUFFERED": "1"}


def test_the_service_reads_back_the_profile_addresses_and_secret_it_was_given() -> None:
    profile = Profile(
        first_delay_s=3.0,
        base_delay_s=0.5,
        max_delay_s=6.0,
        give_up_after_s=90,
        notify_base_delay_s=0.25,
        notify_max_delay_s=3.0,
        notify_timeout_s=1.5,
        notify_max_in_flight_per_endpoint=6,
    )
    env = child_env(
        profile,
        database_url="sqlite:////tmp/demo.db",
        simulator_url="http://127.0.0.1:9999",
        webhook_secret="whsec_dGVzdA==",
        port=8123,
        extra={"RECONCILER_WORKERS": "2"},
        base={},
    )
    settings = Settings.from_env(env)

    assert settings.policy("simulator") == profile.policy
    assert settings.sweep_interval_s == profile.sweep_interval_s
    assert settings.breaker_cooldown_s == profile.breaker_cooldown_s
    assert settings.breaker_max_cooldown_s == profile.breaker_max_cooldown_s
    assert settings.read_timeout_s == settings.create_timeout_s == profile.gateway_timeout_s
    assert settings.log_level == "WARNING"
    assert settings.database_url == "sqlite:////tmp/demo.db"
    assert settings.gateway("simulator").api_base == "http://127.0.0.1:9999"
    assert settings.gateway("simulator").webhook_secrets == ("whsec_dGVzdA==",)
    assert (settings.port, settings.workers) == (8123, 2)
    assert settings.notify.policy == profile.delivery_policy
    assert (settings.notify.timeout_s, settings.notify.max_in_flight_per_endpoint) == (1.5, 6)
    # The demo's merchant endpoint listens on loopback.
    assert settings.notify.allow_private is True
