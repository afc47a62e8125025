"""The demo's progress output: redrawn on a terminal, plain lines in a log."""

from __future__ import annotations

import io

import pytest

from reconciler.demo.progress import Progress


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_off_a_terminal_the_progress_goes_to_stderr_as_plain_lines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    progress = Progress(4)
    for done in range(5):
        progress.update(done, "settled")
    progress.close()

    err = capsys.readouterr().err
    assert "\r" not in err
    assert err.splitlines() == [
        f"[{'.' * 30}] 0/4 settled",
        f"[{'#' * 7}{'.' * 23}] 1/4 settled",
        f"[{'#' * 15}{'.' * 15}] 2/4 settled",
        f"[{'#' * 22}{'.' * 8}] 3/4 settled",
        f"[{'#' * 30}] 4/4 settled",
    ]


def test_off_a_terminal_a_stalled_count_is_written_at_most_every_interval() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(100, out, every_s=5.0, clock=clock)
    for second in range(12):
        clock.now = float(second)
        progress.update(3, f"{second} s")

    assert [line.split()[-2] for line in out.getvalue().splitlines()] == ["0", "5", "10"]


def test_off_a_terminal_close_writes_the_state_that_was_held_back() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(100, out, clock=clock)
    progress.update(50, "first")
    clock.now = 1.0
    progress.update(51, "last")
    progress.close()

    assert out.getvalue().splitlines()[-1].endswith("51/100 last")


def test_off_a_terminal_close_repeats_nothing_already_written() -> None:
    out = io.StringIO()
    progress = Progress(2, out)
    progress.update(2, "settled")
    progress.close()

    assert out.getvalue() == f"[{'#' * 30}] 2/2 settled\n"


def test_on_a_terminal_the_bar_is_redrawn_in_place() -> None:
    out = Terminal()
    progress = Progress(2, out, width=4)
    progress.update(0, "a longer note")
    progress.update(0, "a longer note")  # unchanged: nothing redrawn
    progress.update(2, "done")
    first = "[....] 0/2 a longer note"
    # The shorter line is padded so that no tail of the longer one stays on screen.
    assert out.getvalue() == "\r" + first + "\r" + "[####] 2/2 done".ljust(len(first))
    progress.close()
    assert out.getvalue().endswith("\n")
    assert out.getvalue().count("\n") == 1
