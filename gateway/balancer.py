"""Which worker gets the next request: round robin over the workers known to be up, passive
health checking, and probes that take an ejected worker back.

A worker is ejected when the gateway sees it fail as a transport:
- a connection it could not open (refused, unreachable, connect timeout): at once, since
  nothing listens there;
- no answer within `GATEWAY_TIMEOUT_S` (a frozen or stuck worker): at once, since a worker that
  stays silent that long serves nobody;
- a connection closed or reset mid-exchange: after `GATEWAY_EJECT_AFTER` (2) in a row, since a
  single one can be an idle keep-alive connection the worker closed at the wrong moment.
HTTP answers, 5xx included, are the worker speaking: they never count.

An ejected worker gets no request and no WebSocket upgrade while another worker of the pool is
up. A background probe asks its `/health` (after `GATEWAY_PROBE_INTERVAL_S`, 0.5 s, doubling up
to `GATEWAY_PROBE_MAX_S`, 5 s) and takes it back on the first 200. Any real answer from it (when
every worker was down and the gateway tried it anyway) takes it back too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeVar

import aiohttp

from gateway.upstream import AnswerTimeout, ConnectFailed, ConnectionBroken, UpstreamError

log = logging.getLogger("kilat.gateway")
T = TypeVar("T")

# Methods retried on another worker after a failure that may have reached the first one (a
# timeout after sending, a connection broken mid-exchange): the safe ones, which change nothing
# and carry no body. Every method is retried after a failure to connect (nothing was sent).
RETRY_AFTER_DELIVERY = frozenset({"GET", "HEAD", "OPTIONS"})


class Failure(Enum):
    CONNECT = "connect"  # nothing reached the worker
    TIMEOUT = "timeout"  # sent, no answer in time
    RESET = "reset"  # sent, the connection broke


@dataclass
class Backend:
    url: str
    up: bool = True
    failures: int = 0  # consecutive transport failures
    ejected_at: float = 0.0
    probe: asyncio.Task | None = field(default=None, repr=False)


class Balancer:
    """Health state of every worker URL the gateway proxies to (shared by all route names:
    by default every domain is the same worker pool)."""

    def __init__(self, urls: Iterable[str], *, eject_after: int = 2,
                 probe_interval: float = 0.5, probe_max: float = 5.0,
                 probe_timeout: float = 2.0) -> None:
        self.backends = {u: Backend(u) for u in urls}
        self.eject_after = max(1, eject_after)
        self.probe_interval = probe_interval
        self.probe_max = max(probe_max, probe_interval)
        self.probe_timeout = probe_timeout
        self.session: aiohttp.ClientSession | None = None
        self._turn: dict[tuple[str, ...], int] = {}

    def order(self, urls: list[str]) -> list[str]:
        """The URLs to try for one request, in order: the workers that are up, starting at the
        next one in turn, then the ejected ones (tried only when every other one failed)."""
        if len(urls) == 1:
            return urls
        key = tuple(urls)
        turn = self._turn.get(key, 0)
        self._turn[key] = turn + 1
        up = [u for u in urls if self.backends[u].up]
        down = [u for u in urls if not self.backends[u].up]
        if up:
            start = turn % len(up)
            up = up[start:] + up[:start]
        if down:
            start = turn % len(down)
            down = down[start:] + down[:start]
        return up + down

    def is_up(self, url: str) -> bool:
        return self.backends[url].up

    def succeeded(self, url: str) -> None:
        backend = self.backends[url]
        backend.failures = 0
        if not backend.up:
            self._readmit(backend, "answered a request")

    def failed(self, url: str, kind: Failure) -> None:
        backend = self.backends[url]
        backend.failures += 1
        if backend.up and (kind is not Failure.RESET or backend.failures >= self.eject_after):
            backend.up = False
            backend.ejected_at = time.monotonic()
            log.warning("upstream %s ejected after %d failure(s), last: %s",
                        url, backend.failures, kind.value)
            self._start_probe(backend)

    def _readmit(self, backend: Backend, why: str) -> None:
        backend.up = True
        backend.failures = 0
        log.warning("upstream %s taken back after %.2f s (%s)", backend.url,
                    time.monotonic() - backend.ejected_at, why)
        if backend.probe is not None and backend.probe is not asyncio.current_task():
            backend.probe.cancel()
        backend.probe = None

    def _start_probe(self, backend: Backend) -> None:
        if self.session is None or (backend.probe is not None and not backend.probe.done()):
            return
        backend.probe = asyncio.get_running_loop().create_task(self._probe(backend))

    async def _probe(self, backend: Backend) -> None:
        delay = self.probe_interval
        while not backend.up:
            await asyncio.sleep(delay)
            if backend.up:
                return
            if await self._answers(backend.url):
                self._readmit(backend, "health probe answered")
                return
            delay = min(delay * 2, self.probe_max)

    async def _answers(self, url: str) -> bool:
        assert self.session is not None
        try:
            async with self.session.get(
                    url + "/health", allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=self.probe_timeout)) as resp:
                await resp.read()
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def close(self) -> None:
        tasks = [b.probe for b in self.backends.values() if b.probe is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def failure_of(exc: BaseException) -> Failure | None:
    """How an exception of an upstream client counts (None: not a transport failure)."""
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError
                  | ConnectFailed):
        return Failure.CONNECT
    if isinstance(exc, TimeoutError | AnswerTimeout):
        return Failure.TIMEOUT
    if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError
                  | ConnectionBroken):
        return Failure.RESET
    return None


def may_retry(failure: Failure, method: str) -> bool:
    """Whether a request that failed this way may be sent again to another worker: always when
    nothing reached the first one, otherwise only for safe methods."""
    return failure is Failure.CONNECT or method in RETRY_AFTER_DELIVERY


async def failover(balancer: Balancer, upstream, method: str,
                   attempt: Callable[[str], Awaitable[T]]) -> tuple[T | None, Failure | None]:
    """`attempt(worker URL)` on the workers of `upstream` in the balancer's order until one
    answers: (its result, None), or (None, the last failure) when none did. After a failure
    that may have reached a worker, only a safe method is tried again, and only on a worker
    known to be up."""
    failure: Failure | None = None
    for base in balancer.order(upstream.urls):
        if failure is not None and failure is not Failure.CONNECT and not balancer.is_up(base):
            break
        try:
            result = await attempt(base)
        except (aiohttp.ClientError, TimeoutError, UpstreamError) as exc:
            failure = failure_of(exc)
            if failure is None:
                raise
            log.warning("upstream %s (%s) failed: %s: %s", upstream.name, base, failure.value,
                        exc or type(exc).__name__)
            balancer.failed(base, failure)
            if may_retry(failure, method):
                continue
            break
        balancer.succeeded(base)
        return result, None
    return None, failure
