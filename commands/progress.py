"""Progress of a long operator command on a terminal: count, rate and time left, redrawn in
place at most a few times a second. When the output is not a terminal (a pipe, a log, CI) it
prints nothing, so scripts see only the command's result."""

from __future__ import annotations

import sys
import time
from typing import TextIO

REDRAW_S = 0.2


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class Progress:
    """`advance(n)` as work is done; `close()` at the end (ends the line)."""

    def __init__(self, verb: str, total: int | None, *, out: TextIO | None = None,
                 clock=time.monotonic) -> None:
        self.verb = verb
        self.total = total
        self.out = out if out is not None else sys.stderr
        self.enabled = self.out.isatty()
        self.clock = clock
        self.count = 0
        self.started = clock()
        self._drawn_at = float("-inf")

    def line(self) -> str:
        """The progress line for the count so far."""
        elapsed = max(self.clock() - self.started, 1e-9)
        rate = self.count / elapsed
        text = f"{self.verb} {self.count:,}"
        if self.total is not None:
            text += f" of {self.total:,}"
        text += f"  {rate:,.0f}/s"
        if self.total is not None and rate > 0:
            text += f"  ETA {_duration(max(self.total - self.count, 0) / rate)}"
        return text

    def advance(self, n: int = 1) -> None:
        self.count += n
        if not self.enabled:
            return
        now = self.clock()
        if now - self._drawn_at >= REDRAW_S or self.count == self.total:
            self._drawn_at = now
            self.out.write("\r\033[K" + self.line())
            self.out.flush()

    def close(self) -> None:
        if self.enabled and self.count:
            self.out.write("\r\033[K" + self.line() + "\n")
            self.out.flush()
