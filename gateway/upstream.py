"""A lean HTTP/1.1 client for the gateway's bodiless requests (GET, HEAD, DELETE, OPTIONS
without a body: most of the traffic), with keep-alive connections pooled per worker.

aiohttp's client spent about a third of the gateway's CPU per request on objects this path does
not need (request info, cookies, redirects, tracing, a stream reader per answer). Here a request
is one write of bytes the gateway already holds, and the answer is parsed from the connection's
buffer. Requests with a body, and WebSocket upgrades, still go through aiohttp.

Errors say how far a request got, for the balancer and the retry rule: `ConnectFailed` (nothing
was sent), `AnswerTimeout` (sent, no byte within the read timeout), `ConnectionBroken` (sent,
the connection closed or broke before the answer was complete).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from multidict import CIMultiDict

MAX_HEAD = 64 * 1024
IDLE_S = 30.0  # below aiohttp's server keep-alive (75 s): we close an idle connection first
MAX_IDLE = 256  # idle connections kept per worker; a burst beyond that closes its extras


class UpstreamError(Exception):
    pass


class ConnectFailed(UpstreamError):
    pass


class AnswerTimeout(UpstreamError, TimeoutError):
    pass


class ConnectionBroken(UpstreamError):
    pass


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.done = False  # the peer closed, or the connection broke
        self.waiter: asyncio.Future | None = None
        self.idle_since = 0.0

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._wake()

    def eof_received(self) -> bool:
        self.done = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.done = True
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def more(self, timeout: float) -> None:
        """Wait for more bytes (or the end); AnswerTimeout after `timeout` seconds."""
        if self.done:
            raise ConnectionBroken("the worker closed the connection")
        loop = asyncio.get_running_loop()
        waiter = self.waiter = loop.create_future()
        timer = loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self.waiter = None

    def close(self) -> None:
        self.done = True
        if self.transport is not None:
            self.transport.close()


def _expire(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(AnswerTimeout("no answer in time"))


class Answer:
    """An upstream answer: status, reason and headers; `body` when it was small enough to be
    read whole, else `stream()` yields it."""

    def __init__(self, client: LeanClient, base: str, conn: _Conn, status: int, reason: str,
                 headers: CIMultiDict, length: int | None, chunked: bool, keep: bool,
                 timeout: float) -> None:
        self.status, self.reason, self.headers = status, reason, headers
        self.body: bytes | None = None
        self._client, self._base, self._conn = client, base, conn
        self._length, self._chunked, self._keep = length, chunked, keep
        self._timeout = timeout

    async def _read_whole(self, n: int) -> None:
        conn = self._conn
        while len(conn.buf) < n:
            await conn.more(self._timeout)
        self.body = bytes(conn.buf[:n])
        del conn.buf[:n]
        self._finish()

    def _finish(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._keep and not conn.done and not conn.buf:
            self._client.release(self._base, conn)
        else:
            conn.close()

    def abort(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def stream(self, size: int = 64 * 1024) -> AsyncIterator[bytes]:
        """The body as it arrives (chunked transfer decoded); the connection goes back to the
        pool after its last byte."""
        conn = self._conn
        assert conn is not None
        try:
            if self._chunked:
                async for piece in self._chunks(conn):
                    yield piece
            elif self._length is not None:
                left = self._length
                while left:
                    if not conn.buf:
                        await conn.more(self._timeout)
                        continue
                    piece = bytes(conn.buf[:min(left, size)])
                    del conn.buf[:len(piece)]
                    left -= len(piece)
                    yield piece
            else:  # delimited by the end of the connection
                self._keep = False
                while True:
                    if conn.buf:
                        piece = bytes(conn.buf)
                        conn.buf.clear()
                        yield piece
                    elif conn.done:
                        break
                    else:
                        try:
                            await conn.more(self._timeout)
                        except ConnectionBroken:
                            break
        except BaseException:
            self.abort()
            raise
        self._finish()

    async def _chunks(self, conn: _Conn) -> AsyncIterator[bytes]:
        while True:
            while (end := conn.buf.find(b"\r\n")) < 0:
                if len(conn.buf) > MAX_HEAD:
                    raise ConnectionBroken("bad chunk header")
                await conn.more(self._timeout)
            size = int(bytes(conn.buf[:end]).split(b";", 1)[0].strip() or b"x", 16)
            del conn.buf[:end + 2]
            if size == 0:  # trailers, up to the empty line
                while (end := conn.buf.find(b"\r\n")) != 0:
                    if end > 0:
                        del conn.buf[:end + 2]
                        continue
                    await conn.more(self._timeout)
                del conn.buf[:2]
                return
            while len(conn.buf) < size + 2:
                await conn.more(self._timeout)
            piece = bytes(conn.buf[:size])
            del conn.buf[:size + 2]
            yield piece


def header_lines(headers) -> bytes:
    """`name: value` lines, each ending in CRLF, of (name, value) pairs or a multidict."""
    items = headers.items() if hasattr(headers, "items") else headers
    return "".join(f"{k}: {v}\r\n" for k, v in items).encode("latin-1", "replace")


class LeanClient:
    """Pooled keep-alive connections to the workers."""

    def __init__(self, connect_timeout: float = 5.0) -> None:
        self.connect_timeout = connect_timeout
        self._idle: dict[str, list[_Conn]] = {}
        self._where: dict[str, tuple[str, int, bytes]] = {}

    def _address(self, base: str) -> tuple[str, int, bytes]:
        found = self._where.get(base)
        if found is None:
            parts = urlsplit(base)
            host = parts.hostname or "127.0.0.1"
            port = parts.port or 80
            found = self._where[base] = (host, port, parts.netloc.encode("ascii"))
        return found

    def release(self, base: str, conn: _Conn) -> None:
        idle = self._idle.setdefault(base, [])
        if len(idle) >= MAX_IDLE:
            idle[:] = [c for c in idle if not c.done]
            if len(idle) >= MAX_IDLE:
                conn.close()
                return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    async def _connection(self, base: str) -> _Conn:
        idle = self._idle.get(base)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.done and not conn.buf and now - conn.idle_since < IDLE_S:
                return conn
            conn.close()
        host, port, _ = self._address(base)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(_Conn, host, port)
        except (OSError, TimeoutError) as exc:
            raise ConnectFailed(f"{base}: {exc or type(exc).__name__}") from exc
        return conn  # type: ignore[return-value]

    async def request(self, base: str, method: str, target: str, fields: bytes,
                      timeout: float, buffer_limit: int) -> Answer:
        """Send a bodiless request (`fields`: its header lines, each ending in CRLF, without
        `Host`) and read the answer's head, and its body when it is at most `buffer_limit`
        bytes."""
        conn = await self._connection(base)
        _, _, netloc = self._address(base)
        head = b"%s %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (
            method.encode("ascii"), target.encode("utf-8", "surrogateescape"), netloc, fields)
        if conn.done:
            raise ConnectionBroken("the worker closed the connection")
        conn.transport.write(head)  # type: ignore[union-attr]
        try:
            answer = await self._read_head(base, conn, method, timeout)
            if answer._length is not None and answer._length <= buffer_limit \
                    and not answer._chunked:
                await answer._read_whole(answer._length)
            return answer
        except BaseException:
            conn.close()
            raise

    async def _read_head(self, base: str, conn: _Conn, method: str, timeout: float) -> Answer:
        while True:
            while (end := conn.buf.find(b"\r\n\r\n")) < 0:
                if len(conn.buf) > MAX_HEAD:
                    raise ConnectionBroken("answer head too large")
                await conn.more(timeout)
            lines = bytes(conn.buf[:end]).decode("latin-1").split("\r\n")
            del conn.buf[:end + 4]
            version, _, rest = lines[0].partition(" ")
            code, _, reason = rest.partition(" ")
            if not version.startswith("HTTP/1.") or not code.isdigit():
                raise ConnectionBroken(f"not an HTTP answer: {lines[0][:40]!r}")
            status = int(code)
            if 100 <= status < 200:
                continue  # an interim answer: the final one follows
            break
        headers: CIMultiDict = CIMultiDict()
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.add(name.strip(), value.strip())
        keep = version == "HTTP/1.1" and "close" not in headers.get("Connection", "").lower()
        chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        length: int | None = None
        if method == "HEAD" or status in (204, 304):
            length, chunked = 0, False
        elif not chunked and (raw := headers.get("Content-Length")) is not None:
            if not raw.isdigit():
                raise ConnectionBroken("bad Content-Length")
            length = int(raw)
        return Answer(self, base, conn, status, reason, headers, length, chunked, keep, timeout)

    def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
