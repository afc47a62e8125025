"""Every serving process flushes its webhook counts each second and refreshes `auto`."""

from __future__ import annotations

import logging
import threading
import time

from reconciler.services import reliability
from reconciler.services.context import Context

log = logging.getLogger(__name__)

FLUSH_EVERY_S = 1.0
REFRESH_EVERY_S = 60.0


class ReliabilityJob:
    """A daemon thread: flush the counts every second, recompute first delays every minute.

    Every process runs one (webhooks reach all of them), unlike the sweep, which one
    process per host runs.
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reliability", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop, and flush what was counted last."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        self._flush()

    def _run(self) -> None:
        refreshed = -REFRESH_EVERY_S
        while not self._stop.wait(FLUSH_EVERY_S):
            self._flush()
            if time.monotonic() - refreshed >= REFRESH_EVERY_S:
                refreshed = time.monotonic()
                try:
                    reliability.refresh(self.ctx)
                except Exception:
                    log.exception("recomputing the first poll delays failed; the last ones stay")

    def _flush(self) -> None:
        try:
            reliability.flush(self.ctx)
        except Exception:
            # The counts are kept in memory for the next flush.
            log.warning("storing webhook reliability counts failed", exc_info=True)
