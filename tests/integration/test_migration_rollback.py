"""A release can be rolled back: `reconciler db downgrade` undoes the newest migration."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path


def reconciler(*args: str, db: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env["RECONCILER_DATABASE_URL"] = f"sqlite:///{db}"
    return subprocess.run(
        [sys.executable, "-m", "reconciler.entrypoints.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}


def payment_columns(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {row[1] for row in conn.execute("PRAGMA table_info(payments)")}


def test_downgrading_one_step_and_upgrading_again(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    assert reconciler("db", "upgrade", db=db).returncode == 0
    assert "shadow" in payment_columns(db)

    down = reconciler("db", "downgrade", "-1", db=db)

    assert down.returncode == 0, down.stderr
    assert down.stdout.strip() == "database at 0010"
    assert "shadow" not in payment_columns(db)
    assert "admin_sessions" in tables(db)
    assert reconciler("db", "upgrade", db=db).returncode == 0
    assert "shadow" in payment_columns(db)


def test_an_unknown_revision_is_one_line(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    reconciler("db", "upgrade", db=db)

    refused = reconciler("db", "downgrade", "nonsense", db=db)

    assert refused.returncode == 2
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
