"""SQLite: writers of one process queue on a lock; readers never wait for them."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from sqlalchemy import text
from support.app import make_settings

from reconciler.bootstrap import bootstrap
from reconciler.services.merchants import create_merchant


def test_a_reader_does_not_wait_for_an_open_write_transaction(
    sqlite_template: Path, tmp_path: Path
) -> None:
    db = tmp_path / "r.db"
    shutil.copy(sqlite_template, db)
    ctx = bootstrap(make_settings(f"sqlite:///{db}"), gateways={})
    try:
        create_merchant(ctx, "acme")
        writing, release = threading.Event(), threading.Event()

        def hold_the_write_lock() -> None:
            with ctx.sessions.begin() as session:
                session.execute(text("UPDATE merchants SET name = 'renamed'"))
                writing.set()
                release.wait(30)

        writer = threading.Thread(target=hold_the_write_lock)
        writer.start()
        assert writing.wait(10)
        with ctx.read() as session:
            name = session.execute(text("SELECT name FROM merchants")).scalar_one()
        # The read finished while the writer still held its transaction: it did not queue.
        still_writing = writer.is_alive() and not release.is_set()
        release.set()
        writer.join()
        assert name == "acme"  # the committed snapshot, not the open write
        assert still_writing
    finally:
        ctx.close()


def test_concurrent_writers_queue_instead_of_failing(sqlite_template: Path, tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    shutil.copy(sqlite_template, db)
    ctx = bootstrap(make_settings(f"sqlite:///{db}"), gateways={})
    errors: list[BaseException] = []

    def create(n: int) -> None:
        try:
            for i in range(10):
                create_merchant(ctx, f"m-{n}-{i}")
        except BaseException as exc:  # collected for the assertion
            errors.append(exc)

    try:
        threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        with ctx.read() as session:
            assert session.execute(text("SELECT count(*) FROM merchants")).scalar_one() == 80
    finally:
        ctx.close()
