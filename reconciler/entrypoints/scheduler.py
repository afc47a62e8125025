"""The in-process sweep: APScheduler jobs that call `Sweeper.tick`.

A `date` job wakes the sweep at the earliest due time it knows of (and whenever a row
becomes due sooner: this process's commits at once, other replicas' through NOTIFY on
PostgreSQL); an `interval` job every `RECONCILER_SWEEP_INTERVAL_S` is the safety net,
and reads nothing from the database while nothing can be due.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import tempfile
import threading
from datetime import UTC, datetime
from typing import IO

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.background import BackgroundScheduler

from reconciler.config import ConfigError
from reconciler.services.sweep import Sweeper

log = logging.getLogger(__name__)


def lock_dir(temp_dir: str | None) -> str:
    """Return the writable directory for the sweep's lock file, or say which variable to set.

    On a read-only root filesystem `tempfile` finds no usable directory unless one is
    given: RECONCILER_TEMP_DIR, or TMPDIR (a tmpfs on /tmp works too).
    """
    if temp_dir is not None:
        if not os.access(temp_dir, os.W_OK | os.X_OK) or not os.path.isdir(temp_dir):
            raise ConfigError(f"RECONCILER_TEMP_DIR {temp_dir!r} is not a writable directory")
        return temp_dir
    try:
        return tempfile.gettempdir()
    except FileNotFoundError:
        raise ConfigError(
            "no writable temporary directory (read-only root?): set RECONCILER_TEMP_DIR to "
            "one, or mount a tmpfs on /tmp"
        ) from None


class SweepJob:
    """Run the sweep every interval; only one process per host and database sweeps at once.

    Several server workers (or a Werkzeug reloader's two processes) may each start a
    scheduler: the claim makes that safe anyway, and an advisory file lock keeps all but
    one of them idle, so one host does not multiply its gateway traffic.
    """

    def __init__(
        self, sweeper: Sweeper, interval_s: float, lock_name: str, temp_dir: str | None = None
    ) -> None:
        self.sweeper = sweeper
        self.interval_s = interval_s
        self._wake_at: datetime | None = None
        self._wake_job: str | None = None  # the planned wake's job id
        self._wakes = 0
        self._wake_lock = threading.Lock()

        digest = hashlib.sha256(lock_name.encode()).hexdigest()[:16]
        self.lock_path = os.path.join(lock_dir(temp_dir), f"reconciler-sweep-{digest}.lock")
        self._lock_file: IO[bytes] | None = None
        self.scheduler = BackgroundScheduler(timezone="UTC")

    def start(self) -> None:
        self.sweeper.listen(self.wake)
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

    def wake(self, at: datetime) -> None:
        """Run a sweep at `at` (at once if it is past), unless one is planned sooner.

        Each wake is its own job: a wake asked for while the previous one still runs
        must not be skipped by APScheduler's one-instance-per-job rule (that lost every
        later wake, leaving only the interval). A planned wake replaced by a sooner one
        is removed.
        """
        with self._wake_lock:
            # A planned wake already past was run or skipped (a wake that comes while the
            # last one still runs is dropped by max_instances): it covers nothing now.
            planned = self._wake_at
            if planned is not None and datetime.now(UTC) < planned <= at:
                return
            self._wake_at = at
            self._wakes += 1
            job_id = f"wake-{self._wakes}"
            replaced, self._wake_job = self._wake_job, job_id
        with contextlib.suppress(SchedulerNotRunningError):  # stopping: nothing to wake
            self.scheduler.add_job(
                self._woken,
                "date",
                run_date=at,
                args=[job_id],
                id=job_id,
                misfire_grace_time=None,
            )
            if replaced is not None:
                with contextlib.suppress(JobLookupError):  # it ran (or runs) already
                    self.scheduler.remove_job(replaced)

    def _woken(self, job_id: str) -> None:
        with self._wake_lock:
            if self._wake_job == job_id:
                self._wake_at = None
                self._wake_job = None
        self.run()

    def stop(self) -> None:
        self.sweeper.stop_listening()
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
