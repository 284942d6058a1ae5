"""Per-client sliding-window rate limit (default 100 requests per 60 s).

A sliding log per client: a request is allowed while fewer than `limit` requests were allowed
in the last `window` seconds. Rejected requests are not counted, so a client recovers as soon as
its oldest request leaves the window; `Retry-After` says when that is.
"""

from __future__ import annotations

import math
import time
from collections import deque


class SlidingWindowLimiter:
    def __init__(self, limit: int = 100, window: float = 60.0, max_clients: int = 100_000) -> None:
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self._log: dict[str, deque[float]] = {}

    def check(self, client: str, now: float | None = None) -> tuple[bool, int]:
        """(allowed, retry_after_seconds) for one request of `client`."""
        now = time.monotonic() if now is None else now
        hits = self._log.get(client)
        if hits is None:
            if len(self._log) >= self.max_clients:
                self._evict(now)
            hits = self._log[client] = deque()
        cutoff = now - self.window
        while hits and hits[0] <= cutoff:
            hits.popleft()
        if len(hits) >= self.limit:
            return False, max(1, math.ceil(hits[0] + self.window - now))
        hits.append(now)
        return True, 0

    def _evict(self, now: float) -> None:
        cutoff = now - self.window
        for client in [c for c, h in self._log.items() if not h or h[-1] <= cutoff]:
            del self._log[client]
