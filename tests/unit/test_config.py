"""Settings from `RECONCILER_*` variables: defaults, overrides, and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.config import GATEWAYS, STRIPE_API_VERSION, ConfigError, Settings, declared
from reconciler.domain.policy import PollPolicy


def test_defaults_match_the_contract() -> None:
    settings = Settings.from_env({})

    assert settings.database_url == "sqlite:///reconciler.db"
    assert settings.admin_token is None
    assert settings.sweep_interval_s == 1.0
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    for gateway in GATEWAYS:
        assert settings.policy(gateway) == PollPolicy(30, 30, 2, 3600, 259200)


def test_no_gateway_is_enabled_without_credentials() -> None:
    settings = Settings.from_env({})

    assert [g for g in GATEWAYS if settings.gateway(g).enabled] == []
    assert settings.gateway("stripe").api_base == "https://api.stripe.com"
    assert settings.gateway("razorpay").api_base == "https://api.razorpay.com"


def test_empty_variables_count_as_unset() -> None:
    settings = Settings.from_env({"RECONCILER_PORT": "", "RECONCILER_STRIPE_API_KEY": ""})

    assert settings.port == 8000
    assert not settings.gateway("stripe").enabled


def test_fractions_of_a_second_are_allowed() -> None:
    settings = Settings.from_env(
        {"RECONCILER_SWEEP_INTERVAL_S": "0.25", "RECONCILER_POLL_FIRST_DELAY_S": "0.5"}
    )

    assert settings.sweep_interval_s == 0.25
    assert settings.policy("simulator").first_delay == 0.5


def test_a_global_poll_setting_applies_to_every_gateway() -> None:
    settings = Settings.from_env({"RECONCILER_POLL_MAX_DELAY_S": "600"})

    assert {settings.policy(g).max_delay for g in GATEWAYS} == {600.0}


def test_a_gateway_override_changes_only_that_gateway() -> None:
    settings = Settings.from_env(
        {"RECONCILER_POLL_MAX_DELAY_S": "600", "RECONCILER_STRIPE_POLL_MAX_DELAY_S": "120.5"}
    )

    assert settings.policy("stripe") == PollPolicy(max_delay=120.5)
    assert settings.policy("razorpay") == PollPolicy(max_delay=600)
    assert settings.policy("simulator") == PollPolicy(max_delay=600)


def test_an_unknown_gateway_gets_the_default_policy() -> None:
    assert Settings.from_env({}).policy("paypal") == PollPolicy()


@pytest.mark.parametrize(
    ("env", "enabled"),
    [
        ({"RECONCILER_STRIPE_API_KEY": "sk_test_x"}, {"stripe"}),
        ({"RECONCILER_SIMULATOR_URL": "http://127.0.0.1:9000"}, {"simulator"}),
        # Razorpay needs both halves of its basic-auth pair.
        ({"RECONCILER_RAZORPAY_KEY_ID": "rzp_test_x"}, set()),
        (
            {"RECONCILER_RAZORPAY_KEY_ID": "rzp_test_x", "RECONCILER_RAZORPAY_KEY_SECRET": "s"},
            {"razorpay"},
        ),
        # A webhook secret alone does not let us call the gateway.
        ({"RECONCILER_STRIPE_WEBHOOK_SECRET": "whsec_x"}, set()),
    ],
)
def test_a_gateway_is_enabled_only_with_credentials(env: dict[str, str], enabled: set[str]) -> None:
    settings = Settings.from_env(env)

    assert {g for g in GATEWAYS if settings.gateway(g).enabled} == enabled


def test_comma_separated_webhook_secrets_become_a_tuple() -> None:
    settings = Settings.from_env({"RECONCILER_STRIPE_WEBHOOK_SECRET": " whsec_new, ,whsec_old,"})

    assert settings.gateway("stripe").webhook_secrets == ("whsec_new", "whsec_old")
    assert settings.gateway("razorpay").webhook_secrets == ()


def test_the_process_environment_is_read_when_no_mapping_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RECONCILER_PORT", "8123")

    assert Settings.from_env().port == 8123


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "eighty"),
        ("PORT", "80.5"),  # a port is an integer
        ("SWEEP_INTERVAL_S", "fast"),
        ("SWEEP_INTERVAL_S", "0"),
        ("SWEEP_INTERVAL_S", "-1"),
        ("POLL_FACTOR", "two"),
        ("POLL_FACTOR", "0.5"),  # a shrinking schedule would hammer the gateway
        ("POLL_BASE_DELAY_S", "0"),
        ("POLL_GIVE_UP_AFTER_S", "-1"),
        ("STRIPE_POLL_MAX_DELAY_S", "1h"),
        ("RAZORPAY_POLL_FIRST_DELAY_S", "-5"),
        # float() accepts these, but no schedule can be built from them.
        ("POLL_MAX_DELAY_S", "nan"),
        ("POLL_GIVE_UP_AFTER_S", "inf"),
        ("SWEEP_INTERVAL_S", "nan"),
    ],
)
def test_a_bad_number_is_a_config_error(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"RECONCILER_{name}|poll policy"):
        Settings.from_env({f"RECONCILER_{name}": value})


def test_every_setting_has_one_variable_and_a_help_line() -> None:
    names = [spec.env for spec in declared()]

    assert len(names) == len(set(names))
    assert {"RECONCILER_DATABASE_URL", "RECONCILER_GATEWAY_READ_TIMEOUT_S"} <= set(names)
    assert all(spec.help for spec in declared())


@pytest.mark.parametrize(
    "settings",
    [
        Settings(),
        Settings(database_url="sqlite:////tmp/x.db", port=8123, sweep_enabled=False),
        Settings(simulator_webhook_secret=("whsec_new", "whsec_old"), read_timeout_s=2.5),
        Settings(poll=PollPolicy(first_delay=0.5, max_delay=4)),
        # One gateway's override is kept apart from the common schedule.
        Settings(poll=PollPolicy(max_delay=600), policies={"stripe": PollPolicy(max_delay=120)}),
    ],
)
def test_a_child_environment_rebuilds_the_same_settings(settings: Settings) -> None:
    assert Settings.from_env(settings.child_env({})) == settings


def test_a_child_environment_drops_the_callers_own_settings_and_keeps_the_rest() -> None:
    base = {"PATH": "/usr/bin", "RECONCILER_ADMIN_TOKEN": "secret", "RECONCILER_PORT": "9"}

    env = Settings().child_env(base, port=8001)

    assert env == {"PATH": "/usr/bin", "RECONCILER_PORT": "8001"}


def test_a_child_environment_change_is_validated() -> None:
    with pytest.raises(ConfigError, match="RECONCILER_LEASE_S"):
        Settings().child_env({}, lease_s=1)


def test_stripe_calls_are_pinned_to_the_adapters_api_version_unless_set() -> None:
    assert Settings.from_env({}).gateway("stripe").api_version == STRIPE_API_VERSION
    pinned = Settings.from_env({"RECONCILER_STRIPE_API_VERSION": "2025-01-27.acacia"})
    assert pinned.gateway("stripe").api_version == "2025-01-27.acacia"


def test_every_setting_is_named_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()

    assert [spec.env for spec in declared() if spec.env not in readme] == []
