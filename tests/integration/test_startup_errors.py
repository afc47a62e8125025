"""An operator's mistake at start is one line naming the variable, exit 2: never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.config import ConfigError, Settings, known_variables
from reconciler.config_checks import database_url_problem, unknown_variables

GOOD_TOKEN = "t" * 32


def reconciler(*args: str, tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    base["RECONCILER_DATABASE_URL"] = f"sqlite:///{tmp / 'start.db'}"
    return subprocess.run(
        [sys.executable, "-m", "reconciler.entrypoints.cli", *args],
        env={**base, **env},
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"RECONCILER_DATABASE_URL": "garbage"}, ["RECONCILER_DATABASE_URL", "sqlite:///"]),
        # psycopg 3 is the driver; a bare postgresql:// would ask for psycopg2
        ({"RECONCILER_DATABASE_URL": "postgresql://u:pw@db/x"}, ["postgresql+psycopg", "***"]),
        ({"RECONCILER_DATABASE_URL": "postgresql+psycopg://u@db:54x/x"}, ["port"]),
        ({"RECONCILER_LOG_LEVEL": "verbose"}, ["RECONCILER_LOG_LEVEL", "WARNING", "'VERBOSE'"]),
        ({"RECONCILER_ADMIN_TOKEN": "a"}, ["RECONCILER_ADMIN_TOKEN", "at least 32"]),
        ({"RECONCILER_PORT": "80OO"}, ["RECONCILER_PORT", "integer"]),
        ({"RECONCILER_ADMIN_TOKEN_FILE": "/nonexistent/token"}, ["RECONCILER_ADMIN_TOKEN_FILE"]),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable_and_exit_2(
    tmp_path: Path, env: dict[str, str], words: list[str]
) -> None:
    result = reconciler("db", "upgrade", tmp=tmp_path, **env)

    assert result.returncode == 2
    line = one_line(result)
    for word in words:
        assert word in line
    assert "pw" not in line  # a password in a URL is never printed


def test_a_taken_port_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = reconciler("serve", "--port", str(port), tmp=tmp_path)

    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is taken; set RECONCILER_PORT" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Errno" not in result.stderr


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connection refused
        url = f"postgresql+psycopg://user:secretpw@127.0.0.1:{port}/db"
        result = reconciler("db", "upgrade", tmp=tmp_path, RECONCILER_DATABASE_URL=url)

    assert result.returncode == 2
    line = one_line(result)
    assert line.startswith("database error: cannot use RECONCILER_DATABASE_URL")
    assert "secretpw" not in line


def test_a_misspelled_variable_is_warned_about_naming_the_closest(tmp_path: Path) -> None:
    result = reconciler("db", "upgrade", tmp=tmp_path, RECONCILER_ADMINTOKEN=GOOD_TOKEN)

    assert result.returncode == 0, result.stderr
    assert (
        "RECONCILER_ADMINTOKEN is not a setting and is ignored; "
        "did you mean RECONCILER_ADMIN_TOKEN?" in result.stderr
    )
    assert GOOD_TOKEN not in result.stderr


def test_a_secret_is_read_from_its_file_by_the_command_itself(tmp_path: Path) -> None:
    token = tmp_path / "admin_token"
    token.write_text(GOOD_TOKEN + "\n")

    settings = Settings.from_env({"RECONCILER_ADMIN_TOKEN_FILE": str(token)})

    assert settings.admin_token == GOOD_TOKEN


def test_a_variable_set_directly_wins_over_its_file(tmp_path: Path) -> None:
    token = tmp_path / "admin_token"
    token.write_text("f" * 40)
    env = {"RECONCILER_ADMIN_TOKEN_FILE": str(token), "RECONCILER_ADMIN_TOKEN": GOOD_TOKEN}

    assert Settings.from_env(env).admin_token == GOOD_TOKEN


def test_known_variables_and_their_files_are_not_warned_about() -> None:
    env = {
        "RECONCILER_PORT": "1",
        "RECONCILER_STRIPE_POLL_MAX_DELAY_S": "9",
        "RECONCILER_DATABASE_URL_FILE": "/x",
        "RECONCILER_TEMP_DIR": "/x",
        "PATH": "/bin",
    }

    assert unknown_variables(env, "RECONCILER_", known_variables()) == []


def test_a_variable_like_nothing_known_is_warned_about_without_a_guess() -> None:
    [line] = unknown_variables({"RECONCILER_ZZZZZZ": "1"}, "RECONCILER_", known_variables())

    assert line == "RECONCILER_ZZZZZZ is not a setting and is ignored"


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///reconciler.db",
        "sqlite:////var/lib/reconciler/r.db",
        "sqlite://",
        "postgresql+psycopg://reconciler:pw@db:5432/reconciler",
        "postgresql+psycopg://reconciler@/reconciler?host=/run/postgresql",  # a unix socket
    ],
)
def test_the_urls_the_service_can_open_are_accepted(url: str) -> None:
    assert database_url_problem(url) is None


def test_an_admin_token_of_32_characters_is_accepted_and_31_refused() -> None:
    assert Settings(admin_token="x" * 32).admin_token == "x" * 32
    with pytest.raises(ConfigError, match="at least 32"):
        Settings(admin_token="x" * 31)


def test_a_read_only_root_without_a_temp_dir_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    result = reconciler("serve", tmp=tmp_path, RECONCILER_TEMP_DIR=str(missing))

    assert result.returncode == 2
    assert "RECONCILER_TEMP_DIR" in one_line(result)
