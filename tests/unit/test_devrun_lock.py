"""One database per `make run`: a second runner on the same database stops in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.config import Settings
from reconciler.entrypoints.devrun import DevRunError, hold_database, lock_path


def test_a_second_runner_on_the_same_file_is_refused_naming_the_variable(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'reconciler.db'}")
    first = hold_database(settings)
    try:
        with pytest.raises(DevRunError) as refused:
            hold_database(settings)
    finally:
        first.close()

    message = str(refused.value.code)
    assert message.startswith("make run: another make run is using the database ")
    assert "set RECONCILER_DATABASE_URL to another one" in message
    assert "\n" not in message


def test_the_lock_is_free_again_once_the_first_runner_ends(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'reconciler.db'}")
    hold_database(settings).close()

    hold_database(settings).close()


def test_runners_on_different_files_do_not_meet(tmp_path: Path) -> None:
    one = hold_database(Settings(database_url=f"sqlite:///{tmp_path / 'one.db'}"))
    two = hold_database(Settings(database_url=f"sqlite:///{tmp_path / 'two.db'}"))
    one.close()
    two.close()


def test_the_lock_sits_beside_a_sqlite_file_and_in_the_temp_dir_for_postgresql(
    tmp_path: Path,
) -> None:
    sqlite = Settings(database_url=f"sqlite:///{tmp_path / 'r.db'}")
    postgres = Settings(
        database_url="postgresql+psycopg://u:p@db/reconciler", temp_dir=str(tmp_path)
    )

    assert lock_path(sqlite) == tmp_path / "r.db.make-run.lock"
    assert lock_path(postgres).parent == tmp_path
    assert "p@db" not in lock_path(postgres).name  # the URL is hashed, never written out
