"""Progress of record/replay: count, rate and ETA on a terminal, nothing anywhere else."""

from __future__ import annotations

import io

from commands.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_terminal_sees_count_rate_and_time_left() -> None:
    out, clock = Terminal(), Clock()
    progress = Progress("replayed", 3000, out=out, clock=clock)
    clock.now += 2.0
    progress.advance(1000)
    assert out.getvalue().endswith("replayed 1,000 of 3,000  500/s  ETA 4s")
    clock.now += 0.05
    progress.advance(10)  # within the redraw interval: not drawn again
    assert out.getvalue().count("replayed") == 1
    clock.now += 118
    progress.advance(1990)  # the last one is always drawn
    assert out.getvalue().endswith("replayed 3,000 of 3,000  25/s  ETA 0s")
    progress.close()
    assert out.getvalue().endswith("\n")


def test_an_unknown_total_shows_no_eta_and_long_waits_read_as_minutes() -> None:
    out, clock = Terminal(), Clock()
    progress = Progress("recorded", None, out=out, clock=clock)
    clock.now += 1
    progress.advance(50)
    assert out.getvalue().endswith("recorded 50  50/s")
    progress.total = 200_000
    clock.now += 1
    progress.advance(50)
    assert out.getvalue().endswith("recorded 100 of 200,000  50/s  ETA 1h06m")


def test_a_pipe_or_log_gets_nothing() -> None:
    out = io.StringIO()
    progress = Progress("replayed", 10, out=out)
    progress.advance(10)
    progress.close()
    assert out.getvalue() == ""
