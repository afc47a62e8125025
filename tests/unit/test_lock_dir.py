"""On a read-only root the sweep's lock file needs a writable directory, or one line saying so."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from reconciler.config import ConfigError
from reconciler.entrypoints.scheduler import lock_dir


def test_the_configured_temp_dir_is_used(tmp_path: Path) -> None:
    assert lock_dir(str(tmp_path)) == str(tmp_path)


def test_without_a_usable_temp_dir_the_error_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def nowhere() -> str:  # what tempfile does on a read-only root with no tmpfs
        raise FileNotFoundError("No usable temporary directory found")

    monkeypatch.setattr(tempfile, "gettempdir", nowhere)

    with pytest.raises(ConfigError, match="set RECONCILER_TEMP_DIR"):
        lock_dir(None)


def test_a_configured_temp_dir_that_is_missing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="RECONCILER_TEMP_DIR .* is not a writable directory"):
        lock_dir(str(tmp_path / "missing"))
