"""The RECONCILER_NOTIFY_* variables: defaults from the contract, bad values refused."""

from __future__ import annotations

import pytest

from reconciler.config import ConfigError, Settings
from reconciler.domain.delivery import DeliveryPolicy


def test_notification_defaults_are_the_contract_s() -> None:
    notify = Settings.from_env({}).notify
    assert notify.policy == DeliveryPolicy(
        first_delay=0, base_delay=5, factor=2, max_delay=36000, give_up_after=259200
    )
    assert (notify.timeout_s, notify.allow_private) == (15.0, False)


def test_every_notification_variable_is_read() -> None:
    notify = Settings.from_env(
        {
            "RECONCILER_NOTIFY_BASE_DELAY_S": "1.5",
            "RECONCILER_NOTIFY_FACTOR": "3",
            "RECONCILER_NOTIFY_MAX_DELAY_S": "600",
            "RECONCILER_NOTIFY_GIVE_UP_AFTER_S": "3600",
            "RECONCILER_NOTIFY_TIMEOUT_S": "2.5",
            "RECONCILER_NOTIFY_ALLOW_PRIVATE": "1",
        }
    ).notify
    assert (notify.policy.base_delay, notify.policy.factor) == (1.5, 3)
    assert (notify.policy.max_delay, notify.policy.give_up_after) == (600, 3600)
    assert (notify.timeout_s, notify.allow_private) == (2.5, True)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("NOTIFY_BASE_DELAY_S", "soon"),
        ("NOTIFY_BASE_DELAY_S", "0"),
        ("NOTIFY_FACTOR", "0.5"),
        ("NOTIFY_MAX_DELAY_S", "nan"),
        ("NOTIFY_GIVE_UP_AFTER_S", "-1"),
        ("NOTIFY_TIMEOUT_S", "0"),
        ("NOTIFY_TIMEOUT_S", "inf"),
        ("NOTIFY_ALLOW_PRIVATE", "maybe"),
    ],
)
def test_unusable_notification_values_are_configuration_errors(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match="RECONCILER_NOTIFY|delivery"):
        Settings.from_env({f"RECONCILER_{name}": value})
