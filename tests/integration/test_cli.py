"""The `reconciler` command line as a user types it: help, version, merchants, one sweep."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from reconciler import __version__
from reconciler.config import Settings
from reconciler.entrypoints.cli import cli


def reconciler(*args: str, tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = Settings(database_url=f"sqlite:///{tmp / 'cli.db'}").child_env()
    return subprocess.run(
        [sys.executable, "-m", "reconciler.entrypoints.cli", *args],
        env={**base, **env},
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=60,
    )


def every_command(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        found.append((*path, name))
        if isinstance(command, click.Group):
            found += every_command(command, (*path, name))
    return found


def test_version_is_printed() -> None:
    result = CliRunner().invoke(cli, ["--version"])

    assert result.exit_code == 0
    assert __version__ in result.output


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["serve"], ["env var: RECONCILER_HOST", "default: 127.0.0.1"]),
        (["serve"], ["env var: RECONCILER_PORT", "default: 8000"]),
        (["simulator"], ["env var: RECONCILER_SIMULATOR_PORT", "default: 8100"]),
        (["simulator"], ["env var: RECONCILER_SIMULATOR_WEBHOOK_SECRET"]),
        (["merchant", "rotate-key"], ["--grace-hours", "default: 24"]),
        (["sweep"], ["--once"]),
    ],
)
def test_option_help_shows_variable_and_default(command: list[str], expected: list[str]) -> None:
    result = CliRunner().invoke(cli, [*command, "--help"], terminal_width=200)

    assert result.exit_code == 0
    for text in expected:
        assert text in result.output


def test_every_command_has_its_own_help_text() -> None:
    helps = {
        path: CliRunner().invoke(cli, [*path, "--help"], terminal_width=200).output
        for path in every_command(cli)
        if path != ("demo",)  # the demo parses its own flags (argparse)
    }

    assert len(set(helps.values())) == len(helps)
    assert ("merchant", "list") in helps


def test_every_option_says_its_default() -> None:
    silent = []
    for path in every_command(cli):
        command = cli
        for name in path:
            assert isinstance(command, click.Group)
            command = command.commands[name]
        for param in command.params:
            if not isinstance(param, click.Option) or param.is_flag or param.required:
                continue
            # show_default None inherits the group's `show_default: True`.
            shown = param.show_default is not False and param.default not in (None, ())
            shown = shown and not param.multiple
            if not shown and "default:" not in (param.help or ""):
                silent.append((*path, param.name))

    assert silent == []


def test_sweep_alone_runs_one_sweep(tmp_path: Path) -> None:
    assert reconciler("db", "upgrade", tmp=tmp_path).returncode == 0
    for args in (["sweep"], ["sweep", "--once"]):
        done = reconciler(*args, tmp=tmp_path)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.strip().splitlines()[-1])["claimed"] == 0


def test_merchants_are_created_listed_and_rekeyed(tmp_path: Path) -> None:
    created = reconciler("merchant", "create", "acme", tmp=tmp_path)
    assert created.returncode == 0, created.stderr
    first_key = created.stdout.strip().splitlines()[-1]

    listed = reconciler("merchant", "list", tmp=tmp_path).stdout
    assert "\tacme\t" in listed

    rotated = reconciler("merchant", "rotate-key", "acme", tmp=tmp_path)
    assert rotated.returncode == 0, rotated.stderr
    assert "the old key works until" in rotated.stdout
    new_key = rotated.stdout.strip().splitlines()[-1]
    assert new_key.startswith("rk_") and new_key != first_key


def test_an_unknown_merchant_or_a_bad_setting_exits_2(tmp_path: Path) -> None:
    assert reconciler("merchant", "rotate-key", "nobody", tmp=tmp_path).returncode == 2
    bad = reconciler("db", "upgrade", tmp=tmp_path, RECONCILER_SWEEP_INTERVAL_S="0")
    assert bad.returncode == 2
    assert "RECONCILER_SWEEP_INTERVAL_S" in bad.stderr
