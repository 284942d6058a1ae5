"""One way to wait out a transient failure: retry with capped exponential backoff.

Transient means the same call may succeed later without anything changing in the input: the
database unreachable or restarting, a pool or statement timeout, a lock we could not take in
time, a serialization failure, a broker between leaders. Such failures are waited out, never
dead-lettered; only malformed input and deterministic bugs go to the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from core.db import DatabaseUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_DELAY_S = 0.2
MAX_DELAY_S = 5.0


async def retrying(call: Callable[[], Awaitable[T]], what: str, *,
                   transient: tuple[type[BaseException], ...] = (DatabaseUnavailable,),
                   first_delay: float = FIRST_DELAY_S, max_delay: float = MAX_DELAY_S,
                   sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> T:
    """`await call()` until it returns, sleeping `first_delay`, then twice as long each time up
    to `max_delay`, after each failure of a `transient` type. Anything else propagates, and so
    does cancellation (a stopping worker)."""
    delay = first_delay
    while True:
        try:
            return await call()
        except transient as exc:
            log.warning("%s: transient failure (%r); retrying in %.1fs", what, exc, delay)
            await sleep(delay)
            delay = min(delay * 2, max_delay)
