"""What the benchmarks share: a lean keep-alive HTTP load generator, percentiles, the CPU time
and memory of a process, and a private deployment (database, topics, workers, gateway).

The load generator shares the machine with what it measures, so it is a small HTTP/1.1
keep-alive loop on raw asyncio (uvloop when installed) rather than a full client library: the
less CPU it takes, the less it distorts the figures.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from tests.platform import JWT_SECRET, Platform

os.environ.setdefault("JWT_SECRET", JWT_SECRET)


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection sending GETs one after the other: the next of
    `requests` (shared by every connection, taken in turn) as soon as an answer is whole."""

    def __init__(self, requests: Sequence[bytes], turn: list[int], latencies: list[float],
                 budget: list[int], done: asyncio.Future) -> None:
        self.requests = requests
        self.turn = turn
        self.latencies = latencies
        self.budget = budget
        self.done = done
        self.buf = bytearray()
        self.need = -1  # bytes of the whole response, once its head is parsed
        self.started = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport
        self._send()

    def _send(self) -> None:
        if self.budget[0] <= 0:
            self.transport.close()
            if not self.done.done():
                self.done.set_result(None)
            return
        self.budget[0] -= 1
        request = self.requests[self.turn[0] % len(self.requests)]
        self.turn[0] += 1
        self.started = time.perf_counter()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            if self.need < 0:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.buf[:end]).lower()
                if not head.startswith(b"http/1.1 200"):
                    self._fail(f"unexpected answer {bytes(self.buf[:200])!r}")
                    return
                at = head.find(b"\r\ncontent-length:")
                if at < 0:
                    self._fail("answer without Content-Length")
                    return
                length = int(head[at + 17:head.find(b"\r\n", at + 2)])
                self.need = end + 4 + length
            if len(self.buf) < self.need:
                return
            del self.buf[:self.need]
            self.need = -1
            self.latencies.append(time.perf_counter() - self.started)
            self._send()

    def _fail(self, why: str) -> None:
        if not self.done.done():
            self.done.set_exception(RuntimeError(why))
        self.transport.close()

    def connection_lost(self, exc) -> None:  # type: ignore[override]
        if not self.done.done():
            self.done.set_exception(RuntimeError(f"connection lost: {exc}"))


def get_request(port: int, path: str, headers: dict[str, str] | None = None) -> bytes:
    """The bytes of a bodiless HTTP/1.1 GET."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n".encode()


async def load_many(port: int, requests: Sequence[bytes], count: int, concurrency: int
                    ) -> tuple[float, list[float]]:
    """(elapsed seconds, latencies in seconds) of `count` GETs taken in turn from `requests`
    over `concurrency` keep-alive connections; any answer but a 200 is an error."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    budget, turn = [count], [0]
    dones = [loop.create_future() for _ in range(concurrency)]
    started = time.perf_counter()
    await asyncio.gather(*(loop.create_connection(
        lambda d=d: _Conn(requests, turn, latencies, budget, d), "127.0.0.1", port)
        for d in dones))
    await asyncio.gather(*dones)
    return time.perf_counter() - started, latencies


async def load(port: int, path: str, requests: int, concurrency: int,
               headers: dict[str, str]) -> tuple[float, list[float]]:
    """(elapsed seconds, latencies) of `requests` identical GETs over `concurrency` connections."""
    return await load_many(port, [get_request(port, path, headers)], requests, concurrency)


def pct(values: list[float], p: int) -> float:
    """The p-th percentile of latencies in seconds, in milliseconds."""
    return statistics.quantiles(values, n=100)[p - 1] * 1000


def latency_row(elapsed: float, latencies: list[float]) -> dict[str, float]:
    """req/s, p50, p99 and max (ms) of one measured load."""
    return {"requests": len(latencies), "rps": round(len(latencies) / elapsed, 1),
            "p50_ms": round(pct(latencies, 50), 2), "p99_ms": round(pct(latencies, 99), 2),
            "max_ms": round(max(latencies) * 1000, 2)}


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children processes (nginx's workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / tick
    return own + sum(cpu_seconds(c) for c in _children(pid))


async def idle_cpu_rate(pids: Sequence[int], seconds: float = 3.0) -> float:
    """CPU seconds per second the processes spend with no request to serve (a Faust worker
    polls the broker and runs its timers): subtracted from a row's CPU so that the CPU per
    request is the request's own."""
    before = sum(cpu_seconds(pid) for pid in pids)
    await asyncio.sleep(seconds)
    return (sum(cpu_seconds(pid) for pid in pids) - before) / seconds


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children, in MiB."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    kib = next((int(line.split()[1]) for line in status.splitlines()
                if line.startswith("VmRSS:")), 0)
    return round(kib / 1024 + sum(rss_mib(c) for c in _children(pid)), 1)


def machine() -> dict[str, object]:
    """What the figures were measured on: cores and the load average at the end."""
    return {"cores": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2)}


@asynccontextmanager
async def deployment(workers: int, prefix: str, **env: str) -> AsyncIterator[Platform]:
    """A private deployment: fresh database and topics, `workers` ready workers and a ready
    gateway whose rate limit the bench never reaches. Everything is removed afterwards."""
    p = Platform(Path(tempfile.mkdtemp(prefix=prefix)))
    p.create_database()
    try:
        started = [p.start_worker(f"w{i + 1}", **env) for i in range(workers)]
        for w in started:
            await p.wait_ready(w)
        await p.wait_ready(p.start_gateway(RATE_LIMIT_PER_MIN="100000000"), "/health")
        yield p
    finally:
        p.stop_all()
        p.drop_database()
