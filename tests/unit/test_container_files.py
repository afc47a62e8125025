"""The container files keep their promises: locked and hashed dependencies, no installer at
run time, per-service secrets, read-only roots, a stop that can drain. (`make image-check`
builds and runs the image; these read the files, so they run everywhere.)"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
OURS = ("setup", "reconciler", "simulator")  # the services that run the reconciler image


def name_of(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def locked(path: str) -> dict[str, list[str]]:
    """Map each locked package to its hashes."""
    found: dict[str, list[str]] = {}
    current = ""
    for line in (ROOT / path).read_text().splitlines():
        if line and not line[0].isspace() and "==" in line:
            current = name_of(line)
            found[current] = []
        elif "--hash=sha256:" in line:
            found[current].append(line.strip().split("sha256:")[1].rstrip(" \\"))
    return found


def test_every_dependency_is_listed_once() -> None:
    names = [name_of(r) for r in PROJECT["dependencies"]]

    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    ("lock", "requirements"),
    [
        ("requirements.lock", PROJECT["dependencies"]),
        (
            "requirements-dev.lock",
            PROJECT["dependencies"] + PROJECT["optional-dependencies"]["dev"],
        ),
    ],
)
def test_the_locks_pin_every_dependency_with_hashes(lock: str, requirements: list[str]) -> None:
    pins = locked(lock)

    assert {name_of(r) for r in requirements} <= set(pins), "run make lock"
    assert all(pins.values()), "every pin carries its hashes"


def test_the_image_installs_from_the_lock_and_ships_no_installer() -> None:
    assert "--require-hashes" in DOCKERFILE
    assert "--requirement /tmp/locks/requirements.lock" in DOCKERFILE
    assert "--no-index" in DOCKERFILE  # the app layer builds offline
    runtime = DOCKERFILE.rsplit("\nFROM ", 1)[1]
    assert "pip install" not in runtime
    assert "for module in pip setuptools wheel" in runtime
    assert "ENTRYPOINT" not in DOCKERFILE  # the CLI reads *_FILE itself


def test_the_image_is_labelled() -> None:
    for label in ("title", "version", "revision", "created", "description"):
        assert f"org.opencontainers.image.{label}=" in DOCKERFILE


@pytest.mark.parametrize("service", OURS)
def test_our_services_run_on_a_read_only_root_with_a_tmpfs_tmp(service: str) -> None:
    spec = COMPOSE["services"][service]

    assert spec["read_only"] is True
    assert "/tmp" in spec["tmpfs"]


def test_each_service_mounts_only_its_own_secrets() -> None:
    mounts = {
        name: [v.split(":")[0] for v in spec.get("volumes", []) if v.startswith("secrets")]
        for name, spec in COMPOSE["services"].items()
    }

    assert mounts["db"] == ["secrets-db"]
    assert mounts["reconciler"] == ["secrets-reconciler"]
    assert mounts["simulator"] == ["secrets-simulator"]
    assert mounts["setup"] == ["secrets-setup"]
    assert all(v.endswith(":ro") for v in COMPOSE["services"]["reconciler"]["volumes"])
    assert "0o400" in COMPOSE["services"]["secrets"]["command"][0]


def test_the_stop_grace_period_outlasts_the_drain() -> None:
    grace = COMPOSE["services"]["reconciler"]["stop_grace_period"]
    seconds = float(grace.removesuffix("s"))
    defaults = Settings()

    # Requests already read get 20 s; the sweep is waited for up to the lease.
    assert seconds > max(20, defaults.lease_s)
