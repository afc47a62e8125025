"""The demo's progress line: a redrawn bar on a terminal, a plain line now and then elsewhere."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


class Progress:
    """Show how many payments settled, on stderr by default.

    On a terminal the bar is redrawn in place with `\\r`. Anywhere else (a CI log, a pipe, a
    file) a redrawn line would pile up into one huge line, so a plain line is written at
    each tenth of the total and at least every `every_s` seconds while something changes.
    """

    def __init__(
        self,
        total: int,
        out: TextIO | None = None,
        *,
        width: int = 30,
        every_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = max(1, total)
        self.out = sys.stderr if out is None else out
        self.width = width
        self.every_s = every_s
        self.tty = self.out.isatty()
        self._clock = clock
        self._drawn = ""  # what a terminal shows now
        self._written = ""  # the last plain line written
        self._written_at: float | None = None
        self._tenth = -1
        self._pending = ""

    def line(self, done: int, note: str) -> str:
        """Return the bar for `done` settled payments, with a note after it."""
        filled = int(self.width * min(done, self.total) / self.total)
        return f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{self.total} {note}"

    def update(self, done: int, note: str) -> None:
        """Show the new state (on a terminal at once; elsewhere when it is worth a line)."""
        line = self.line(done, note)
        if self.tty:
            if line != self._drawn:
                # Pad to erase a longer previous line.
                self.out.write("\r" + line.ljust(len(self._drawn)))
                self.out.flush()
                self._drawn = line
            return
        now = self._clock()
        tenth = 10 * min(done, self.total) // self.total
        due = self._written_at is None or now - self._written_at >= self.every_s
        if tenth > self._tenth or (due and line != self._written):
            self._write(line, now)
            self._tenth = tenth
            self._pending = ""
        else:
            self._pending = line

    def close(self) -> None:
        """End the progress output, showing the last state if it was held back."""
        if self.tty:
            if self._drawn:
                self.out.write("\n")
                self.out.flush()
            return
        if self._pending:
            self._write(self._pending, self._clock())
            self._pending = ""

    def _write(self, line: str, now: float) -> None:
        self.out.write(line + "\n")
        self.out.flush()
        self._written = line
        self._written_at = now
