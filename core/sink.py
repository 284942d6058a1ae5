"""A batching database sink whose Kafka offsets are acknowledged only after the write commits.

Agents process each event on its own (so Faust tables write to the right partition), hand the
rows to a sink, and the sink writes them in one multi-row transaction every `max_delay` seconds
or `max_rows` rows. The events behind the rows are acked after the commit, so a crash never
commits an offset whose rows are not in PostgreSQL; with a `guard`, the agent's own position
(core/gaps.py) is stored in the same transaction. Writes must be idempotent (upserts or
ON CONFLICT DO NOTHING): after a crash the same rows may be written again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from core.db import Connection, db
from core.gaps import OffsetGuard
from core.retry import retrying
from web.metrics import SINK_BACKLOG

log = logging.getLogger(__name__)

Writer = Callable[[Connection, list[Any]], Awaitable[None]]


class BatchingSink:
    def __init__(self, name: str, write: Writer, *, guard: OffsetGuard | None = None,
                 max_rows: int = 500, max_delay: float = 0.2) -> None:
        self.name = name
        self.write = write
        self.guard = guard
        self.max_rows = max_rows
        self.max_delay = max_delay
        self._rows: list[Any] = []
        self._events: list[Any] = []
        self._lock = asyncio.Lock()
        self.flushed_rows = 0
        SINK_BACKLOG.labels(name).set_function(self.pending)

    async def add(self, rows: list[Any], event: Any) -> None:
        """Queue `rows`; `event` (a Faust event read with noack) is acked once they commit."""
        self._rows.extend(rows)
        self._events.append(event)
        if len(self._rows) >= self.max_rows:
            await self.flush()

    async def ack_in_order(self, event: Any) -> None:
        """Acknowledge an event that has no rows, but only after every event queued before it.

        Agents that read with noack must ack through the sink only: Faust commits the highest
        run of consecutive acked offsets and does not always notice a gap in front of it (none
        at all before its first commit of a partition), so acking a later event while an
        earlier one still waits for its rows could commit past the earlier one."""
        await self.add([], event)

    def pending(self) -> int:
        return len(self._rows)

    async def flush(self) -> int:
        async with self._lock:
            rows, events = self._rows, self._events
            self._rows, self._events = [], []
            async def commit() -> None:
                async with db.transaction() as conn:
                    if rows:
                        await self.write(conn, rows)
                    if self.guard is not None:
                        await self.guard.record(conn, events)

            try:
                if rows or (events and self.guard is not None):
                    await retrying(commit, f"sink {self.name}")
            except BaseException:
                # Cancelled (worker stopping) or failed: put the batch back in front, so no
                # later event is acked before these (Faust would commit past the gap).
                self._rows[:0], self._events[:0] = rows, events
                raise
            self.flushed_rows += len(rows)
            for event in events:
                event.ack()
            return len(rows)

    async def tick(self) -> None:
        """Flush from a timer. A timer that raises stops the worker, so a failed batch is logged
        and stays queued for the next tick (transient failures are already retried inside)."""
        try:
            await self.flush()
        except Exception:
            log.exception("sink %s flush failed; the batch stays queued", self.name)

    async def run(self, should_stop: Callable[[], bool]) -> None:
        """Flush every `max_delay` seconds until `should_stop()`."""
        while not should_stop():
            await asyncio.sleep(self.max_delay)
            await self.tick()
