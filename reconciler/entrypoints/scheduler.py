"""The in-process sweep: an APScheduler job that calls `Sweeper.tick`."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import tempfile
from typing import IO

from apscheduler.schedulers.background import BackgroundScheduler

from reconciler.services.sweep import Sweeper

log = logging.getLogger(__name__)


class SweepJob:
    """Run the sweep every interval; only one process per host and database sweeps at once.

    Several gunicorn workers (or a Werkzeug reloader's two processes) may each start a
    scheduler: the claim makes that safe anyway, and an advisory file lock keeps all but
    one of them idle, so one host does not multiply its gateway traffic.
    """

    def __init__(self, sweeper: Sweeper, interval_s: float, lock_name: str) -> None:
        self.sweeper = sweeper
        self.interval_s = interval_s
        digest = hashlib.sha256(lock_name.encode()).hexdigest()[:16]
        self.lock_path = os.path.join(tempfile.gettempdir(), f"reconciler-sweep-{digest}.lock")
        self._lock_file: IO[bytes] | None = None
        self.scheduler = BackgroundScheduler(timezone="UTC")

    def start(self) -> None:
        self.scheduler.add_job(
            self.run,
            "interval",
            seconds=self.interval_s,
            id="sweep",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        self.scheduler.start()

    def stop(self) -> None:
        self.scheduler.shutdown(wait=True)
        self.sweeper.close()
        if self._lock_file is not None:
            self._lock_file.close()

    def run(self) -> None:
        if not self._hold_lock():
            return
        try:
            self.sweeper.tick()
        except Exception:
            # The next tick tries again; leases make an interrupted sweep harmless.
            log.exception("sweep failed")

    def _hold_lock(self) -> bool:
        if self._lock_file is not None:
            return True
        handle = open(self.lock_path, "ab")  # noqa: SIM115 - held for the process lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._lock_file = handle
        return True
