"""The gateway's fast path: plain bodiless requests proxied without aiohttp's server machinery.

Profiling the gateway under `bench/gateway_bench.py` showed most of its CPU per request in
aiohttp's request and response objects, its middleware and router, and its client: layers a
proxy of small JSON answers does not need. Each client connection therefore starts on this
protocol. It serves the common request itself — HTTP/1.1 `GET`, `HEAD` or `DELETE`, no body,
no upgrade, a path that normalises to itself and is served by a prefix of `gateway/routes.py` —
with the same edge rules as the aiohttp application (request id, rate limit keyed on verified
tokens, CORS, security headers, access log, failover over the workers, the contract's error
answers). Anything else (a body, a WebSocket upgrade, a preflight, the gateway's own routes, a
path that needs normalising or is refused, HTTP/1.0, an unusual head) hands the connection, with
the bytes already read, to the aiohttp application for good, which answers it as before.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from email.utils import formatdate
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import CIMultiDict

from core.headers import came_over_https
from gateway.app import (
    ACCESS_LOG,
    BALANCER,
    BUFFER_LIMIT,
    EDGE_OWNED,
    HOP_BY_HOP,
    LEAN,
    LIMITER,
    OWN_ROUTES,
    SETTINGS,
    UPSTREAMS,
    _edge_headers,
    bearer_of,
    client_address,
    log,
)
from gateway.balancer import Failure, failover
from gateway.routes import BadPath, encode_path, match_prefix, normalise
from gateway.upstream import Answer, UpstreamError, header_lines

FAST_METHODS = frozenset({"GET", "HEAD", "DELETE"})
KEEPALIVE_S = 75.0  # an idle client connection is closed after this, as aiohttp's server does
MAX_HEAD = 16 * 1024
# Headers that make a request something the fast path leaves to aiohttp.
HANDED_OVER = frozenset({"content-length", "transfer-encoding", "upgrade", "expect",
                         "connection-upgrade"})
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                         "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


class _Date:
    """The `Date` header, formatted once per second."""

    second = -1
    value = b""

    @classmethod
    def now(cls) -> bytes:
        second = int(time.time())
        if second != cls.second:
            cls.second, cls.value = second, formatdate(second, usegmt=True).encode()
        return cls.value


# raw path → (upstream name, decoded path); name "" when the fast path leaves the path alone
_ROUTES: dict[str, tuple[str, str]] = {}


def _route(raw_path: str) -> tuple[str, str]:
    """(the upstream name, the decoded path) of `raw_path` when the fast path may serve it as
    it is: a path that normalises to itself, encoded as the gateway would encode it, not one
    of the gateway's own routes; else ("", "")."""
    try:
        literal, path = normalise(raw_path)
    except BadPath:
        return "", ""
    if path != literal or path in OWN_ROUTES or encode_path(path) != raw_path:
        return "", ""
    found = match_prefix(path)
    return (found[1], path) if found else ("", "")


class FastProtocol(asyncio.Protocol):
    def __init__(self, app: web.Application, fallback, connections: set) -> None:
        self.app = app
        self.fallback = fallback  # aiohttp's server: a factory of its protocol
        self.connections = connections
        self.transport: asyncio.Transport | None = None
        self.remote = ""
        self.buf = bytearray()
        self.busy = False
        self.closed = False
        self._request_id = ""
        self._client = ""
        self._sent = False  # whether the current request's answer has started
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.handed = False
        self._drained: asyncio.Future | None = None

    # ------------------------------------------------------------ connection

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if isinstance(peer, tuple) else ""
        self.connections.add(self)
        loop = asyncio.get_running_loop()
        self._last = loop.time()
        self._timer = loop.call_later(KEEPALIVE_S, self._check_idle)

    def _check_idle(self) -> None:
        if self.closed or self.handed:
            return
        loop = asyncio.get_running_loop()
        idle = loop.time() - self._last
        if idle >= KEEPALIVE_S and not self.busy:
            self.close()
        else:
            self._timer = loop.call_later(max(1.0, KEEPALIVE_S - idle), self._check_idle)

    def connection_lost(self, exc) -> None:  # type: ignore[override]
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        self.connections.discard(self)
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        if self._drained is None or self._drained.done():
            self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    async def _drain(self) -> None:
        if self._drained is not None and not self._drained.done():
            await self._drained

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._last = asyncio.get_running_loop().time()
        if not self.busy:
            self._next()

    def eof_received(self) -> bool:
        return False  # the transport closes; a request in flight finds it closed

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # ------------------------------------------------------------ requests

    def _next(self) -> None:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HEAD:
                self._hand_over()
            return
        parsed = self._parse(bytes(self.buf[:end]))
        if parsed is None:
            self._hand_over()
            return
        del self.buf[:end + 4]
        self.busy = True
        asyncio.get_running_loop().create_task(self._serve(*parsed))

    def _hand_over(self) -> None:
        """The connection, and every later request on it, goes to the aiohttp application."""
        self.handed = True
        self.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        handler = self.fallback()
        transport = self.transport
        transport.set_protocol(handler)  # type: ignore[union-attr]
        handler.connection_made(transport)
        data, self.buf = bytes(self.buf), bytearray()
        if data:
            handler.data_received(data)

    def _parse(self, head: bytes):
        """(method, raw target, path, route name, headers) of a request the fast path serves,
        else None."""
        try:
            text = head.decode("ascii")
        except UnicodeDecodeError:
            return None
        lines = text.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or parts[2] != "HTTP/1.1" or parts[0] not in FAST_METHODS:
            return None
        method, target = parts[0], parts[1]
        headers: CIMultiDict = CIMultiDict()
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or not _TOKEN_CHARS.issuperset(name) or "\n" in value \
                    or "\r" in value or "\x00" in value:
                return None
            headers.add(name, value.strip(" \t"))
        for name in headers:
            if name.lower() in HANDED_OVER:
                return None
        if len(headers.getall("Host", ())) != 1 or not target.startswith("/") \
                or "#" in target or not target.isprintable():
            return None
        raw_path = target.split("?", 1)[0]
        route = _ROUTES.get(raw_path)
        if route is None:
            route = _route(raw_path)
            if len(_ROUTES) >= 10_000:
                _ROUTES.clear()
            _ROUTES[raw_path] = route
        if not route[0]:
            return None  # aiohttp's application decides, as for any unusual path
        return method, target, route[1], route[0], headers

    async def _serve(self, method: str, target: str, path: str, name: str,
                     headers: CIMultiDict) -> None:
        started = time.perf_counter()
        self._request_id, self._client, self._sent = "", self.remote, False
        status = 500
        keep = "close" not in headers.get("Connection", "").lower()
        try:
            status, keep = await self._answer(method, target, path, name, headers, keep)
        except Exception:
            log.exception("fast path failed on %s %s", method, path)
            keep = False
            if not self._sent:
                status = 502
                self._error(502, {"error": "upstream service unavailable", "success": False},
                            (self._request_id or new_request_id(), "", _edge_headers(path, False),
                             False), keep)
        finally:
            self.busy = False
            self._last = asyncio.get_running_loop().time()
        access = self.app[ACCESS_LOG]
        if access.enabled:
            access.record(self._request_id, method, path, status, self._client,
                          (time.perf_counter() - started) * 1000)
        if self.closed:
            return
        if not keep:
            self.close()
        elif self.buf:
            self._next()

    async def _answer(self, method: str, target: str, path: str, name: str,
                      headers: CIMultiDict, keep: bool) -> tuple[int, bool]:
        app = self.app
        settings = app[SETTINGS]
        trusted = settings["trusted_proxies"]
        request_id = self._request_id = headers.get("X-Request-ID") or new_request_id()
        forwarded = headers.get("X-Forwarded-For")
        client = self._client = client_address(self.remote, forwarded, trusted)
        secure = came_over_https("http", self.remote, headers, trusted)  # no TLS listener
        origin = headers.get("Origin", "")
        allowed = origin if origin in settings["cors_origins"] else ""
        edge = (request_id, allowed, _edge_headers(path, secure), secure)

        token = bearer_of(headers.get("Authorization", ""))
        if token is None and "token=" in target:
            token = next((v for k, v in parse_qsl(target.partition("?")[2]) if k == "token"),
                         None)
        user = settings["tokens"].user_of(token) if token else None
        ok, retry_after = app[LIMITER].check("user:" + user if user else "ip:" + client)
        if not ok:
            self._error(429, {"error": "rate limit exceeded"}, edge, keep,
                        extra=((b"Retry-After", str(retry_after).encode()),))
            return 429, keep

        out: list[tuple[str, str]] = []
        for k, v in headers.items():
            lower = k.lower()
            if lower not in HOP_BY_HOP and not lower.startswith("sec-websocket") \
                    and lower not in ("x-forwarded-for", "x-forwarded-host",
                                      "x-forwarded-proto", "x-request-id", "x-real-ip"):
                out.append((k, v))
        out.append(("X-Forwarded-For", f"{forwarded}, {self.remote}" if forwarded
                    else self.remote))
        out.append(("X-Forwarded-Host", headers["Host"]))
        out.append(("X-Forwarded-Proto", "https" if secure else "http"))
        out.append(("X-Real-IP", client))  # as the aiohttp path does: never the client's own
        out.append(("X-Request-ID", request_id))
        forward = header_lines(out)

        lean = app[LEAN]
        timeout = settings["timeout"]
        answer, failure = await failover(
            app[BALANCER], app[UPSTREAMS][name], method,
            lambda base: lean.request(base, method, target, forward, timeout, BUFFER_LIMIT))
        if answer is None:
            log.warning("upstream %s: no worker answered (%s)", name,
                        failure.value if failure else "-")
            if failure is Failure.TIMEOUT:
                self._error(504, {"error": "upstream timeout", "success": False}, edge, keep)
                return 504, keep
            self._error(502, {"error": "upstream service unavailable", "success": False},
                        edge, keep)
            return 502, keep
        return answer.status, await self._relay(method, answer, edge, keep)

    # ------------------------------------------------------------ answers

    def _head(self, status: int, reason: str, headers: list[tuple[bytes, bytes]],
              edge, keep: bool) -> list[bytes]:
        request_id, allowed, edge_headers, secure = edge
        present = {k.lower() for k, _ in headers}
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason.encode("latin-1", "replace"))]
        for k, v in headers:
            lines += (k, b": ", v, b"\r\n")
        for k, v in edge_headers:
            # `Server` and `no-store` replace the worker's (dropped by the caller); the
            # others are added when the worker did not set them.
            if k in ("Server", "Cache-Control") or k.lower().encode() not in present:
                lines.append(f"{k}: {v}\r\n".encode())
        lines.append(b"X-Request-ID: " + request_id.encode("latin-1", "replace") + b"\r\n")
        if allowed:
            lines.append(b"Access-Control-Allow-Origin: " + allowed.encode() + b"\r\n"
                         b"Access-Control-Allow-Credentials: true\r\n"
                         b"Access-Control-Expose-Headers: Content-Length, X-Request-ID\r\n"
                         b"Vary: Origin\r\n")
        lines.append(b"Date: " + _Date.now() + b"\r\n")
        if not keep:
            lines.append(b"Connection: close\r\n")
        return lines

    def _error(self, status: int, body: dict, edge, keep: bool,
               extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        data = json.dumps(body).encode()
        reason = {429: "Too Many Requests", 502: "Bad Gateway", 504: "Gateway Timeout"}[status]
        headers = [(b"Content-Type", b"application/json; charset=utf-8"),
                   (b"Content-Length", str(len(data)).encode()), *extra]
        lines = self._head(status, reason, headers, edge, keep)
        lines += (b"\r\n", data)
        self._write(b"".join(lines))

    def _write(self, data: bytes) -> None:
        self._sent = True
        if not self.closed and not self.transport.is_closing():  # type: ignore[union-attr]
            self.transport.write(data)  # type: ignore[union-attr]

    async def _relay(self, method: str, answer: Answer, edge, keep: bool) -> bool:
        """Send the worker's answer; whether the connection stays open."""
        status = answer.status
        no_store = any(k == "Cache-Control" for k, _ in edge[2])
        headers: list[tuple[bytes, bytes]] = []
        for k, v in answer.headers.items():
            lower = k.lower()
            if lower in HOP_BY_HOP or lower in EDGE_OWNED or lower.startswith("access-control-") \
                    or lower == "date" or (no_store and lower == "cache-control"):
                continue
            headers.append((k.encode("latin-1"), v.encode("latin-1", "replace")))
        bodiless = method == "HEAD" or status in (204, 304)
        length = answer.headers.get("Content-Length")
        if answer.body is not None and not bodiless:
            headers.append((b"Content-Length", str(len(answer.body)).encode()))
            lines = self._head(status, answer.reason, headers, edge, keep)
            lines += (b"\r\n", answer.body)
            self._write(b"".join(lines))
            return keep
        if bodiless:
            if method == "HEAD" and length is not None and length.isdigit():
                headers.append((b"Content-Length", length.encode()))
            lines = self._head(status, answer.reason, headers, edge, keep)
            lines.append(b"\r\n")
            self._write(b"".join(lines))
            return keep
        chunked = not (length is not None and length.isdigit())
        headers.append((b"Transfer-Encoding", b"chunked") if chunked
                       else (b"Content-Length", length.encode()))  # type: ignore[union-attr]
        lines = self._head(status, answer.reason, headers, edge, keep)
        lines.append(b"\r\n")
        self._write(b"".join(lines))
        try:
            async for piece in answer.stream():
                if self.closed:
                    answer.abort()
                    return False
                self._write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                await self._drain()
        except (UpstreamError, ValueError):
            log.warning("upstream broke off a response")
            return False  # the client sees the answer cut short, as with aiohttp
        if chunked:
            self._write(b"0\r\n\r\n")
        return keep


def new_request_id() -> str:
    """A random (version 4) UUID string, as str(uuid.uuid4()) gives, for a third of its cost."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def protocol_factory(app: web.Application, fallback, connections: set):
    return lambda: FastProtocol(app, fallback, connections)
