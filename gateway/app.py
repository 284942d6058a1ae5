"""Kilat API gateway (:8080): path normalisation, prefix routing, streaming reverse proxy,
WebSocket tunnelling, per-client rate limiting, CORS, request ids and aggregated health.

Run with `kilat-gateway` (or `python -m gateway.app`). Settings come from the environment:
`GATEWAY_HOST` (127.0.0.1, 0.0.0.0 in production), `GATEWAY_PORT` (8080), `KILAT_UPSTREAM` /
`UPSTREAM_<NAME>`, `RATE_LIMIT_PER_MIN` (100), `RATE_LIMIT_WINDOW_S` (60), `CORS_ORIGINS`,
`GATEWAY_TRUSTED_PROXIES`, `GATEWAY_TIMEOUT_S` (30), `GATEWAY_EJECT_AFTER` (2),
`GATEWAY_PROBE_INTERVAL_S` (0.5), `GATEWAY_PROBE_MAX_S` (5), `GATEWAY_FAST_PATH` (1; 0 turns the
fast path of gateway/fastpath.py off), and the JWT secret like the workers
(`JWT_SECRET`, else the install's `KILAT_SECRET_FILE`).

Workers that fail as transports are ejected and probed back in (gateway/balancer.py). A request
that could not reach a worker is sent to the next one whatever its method; one that may have
reached it (a timeout after sending, a connection broken mid-exchange) is sent again only when
its method is safe (GET, HEAD, OPTIONS): a POST, PUT, PATCH or DELETE is answered 504/502 and
left to the client, which can retry it with its `Idempotency-Key`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import jwt
from aiohttp import WSMsgType, web
from multidict import CIMultiDict
from yarl import URL

from core.config import Settings, environment, jwt_secret
from core.headers import NO_STORE_PREFIX, came_over_https, edge_headers
from gateway.accesslog import AccessLog
from gateway.balancer import Balancer, Failure, failover
from gateway.ratelimit import SlidingWindowLimiter
from gateway.routes import (
    BadPath,
    Upstream,
    encode_path,
    match,
    match_prefix,
    normalise,
    upstreams_from_env,
)
from gateway.upstream import (
    Answer,
    LeanClient,
    UpstreamError,
    header_lines,
)

log = logging.getLogger("kilat.gateway")
access_log = logging.getLogger("kilat.gateway.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "trailers", "transfer-encoding", "upgrade", "host", "content-length",
}
DEFAULT_ORIGINS = (
    "http://localhost:3000,http://localhost:3001,http://localhost:3002,http://localhost:8080"
)
CORS_ALLOW_HEADERS = "Origin, Content-Type, Accept, Authorization, X-Request-ID, Idempotency-Key"
CORS_ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
# The gateway's own routes; everything else it serves is a prefix of gateway/routes.py.
OWN_ROUTES = ("/health", "/openapi.json")
# Headers the edge decides on its own: an upstream's value is never passed on.
EDGE_OWNED = ("server", "strict-transport-security")

# Upstream answers up to this size are read whole and sent to the client in one write; larger
# or unsized ones are streamed.
BUFFER_LIMIT = 256 * 1024

UPSTREAMS = web.AppKey("upstreams", dict)
SESSION = web.AppKey("session", aiohttp.ClientSession)
LIMITER = web.AppKey("limiter", SlidingWindowLimiter)
SETTINGS = web.AppKey("settings", dict)
BALANCER = web.AppKey("balancer", Balancer)
ACCESS_LOG = web.AppKey("access_log", AccessLog)
LEAN = web.AppKey("lean", LeanClient)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message, "success": False}, status=status, headers=headers)


def client_ip(request: web.Request) -> str:
    """The client address; X-Forwarded-For is believed only from a trusted proxy."""
    return client_address(request.remote or "", request.headers.get("X-Forwarded-For"),
                          request.app[SETTINGS]["trusted_proxies"])


def client_address(remote: str, forwarded: str | None, trusted: set[str]) -> str:
    if forwarded and remote in trusted:
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        # Walk from the right, skipping our own trusted proxies.
        for hop in reversed(hops):
            if hop not in trusted:
                return hop
    return remote


def client_is_secure(request: web.Request) -> bool:
    """TLS on our own listener, or `X-Forwarded-Proto: https` from a trusted proxy."""
    return came_over_https(request.scheme, request.remote, request.headers,
                           request.app[SETTINGS]["trusted_proxies"])


def rate_key(request: web.Request) -> str:
    """Who a request counts against: the signed-in user only when the bearer token's signature,
    issuer, type and expiry verify (anyone can write a token with a made-up user id; it must
    not buy a fresh budget), otherwise the client address (so users behind one NAT do not share
    one budget)."""
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else request.query.get("token")
    if token:
        user = request.app[SETTINGS]["tokens"].user_of(token)
        if user:
            return "user:" + user
    return "ip:" + client_ip(request)


def bearer_of(authorization: str) -> str | None:
    return authorization[7:].strip() if authorization[:7].lower() == "bearer " else None


class VerifiedTokens:
    """The user of a bearer token whose signature, issuer, type and expiry verify, remembered
    until the token expires: a client sends the same token with every request, and checking
    its HMAC again each time bought nothing (a token that verified once stays valid until its
    `exp`, the secret does not change while the gateway runs). Failures are not remembered."""

    def __init__(self, secret: str, max_entries: int = 50_000) -> None:
        self.secret = secret
        self.max_entries = max_entries
        self._users: dict[str, tuple[str, float]] = {}

    def user_of(self, token: str) -> str | None:
        known = self._users.get(token)
        now = time.time()
        if known is not None:
            if known[1] > now:
                return known[0]
            del self._users[token]
        if not self.secret:
            return None
        try:
            claims = jwt.decode(token, self.secret, algorithms=["HS256"],
                                issuer=Settings.jwt_issuer,
                                options={"require": ["exp", "iat", "sub"]})
        except jwt.PyJWTError:
            return None
        if claims.get("token_type") != "access" or not claims.get("user_id"):
            return None
        if len(self._users) >= self.max_entries:
            self._users = {t: v for t, v in self._users.items() if v[1] > now}
            if len(self._users) >= self.max_entries:
                self._users.clear()
        user = str(claims["user_id"])
        self._users[token] = (user, float(claims["exp"]))
        return user


def _route_of(path: str) -> str | None:
    if path in OWN_ROUTES:
        return path
    found = match_prefix(path)
    return found[0] if found else None


def route_path(request: web.Request) -> web.Response | None:
    """Normalise the request path before any routing (dot segments, also percent-encoded);
    the result is what gets routed and forwarded, as `request["path"]`. A path whose dot
    segments take it out of the prefix it names is refused, so no upstream path outside the
    route table (a worker's /metrics, /readiness) can be reached."""
    try:
        literal, path = normalise(request.raw_path)
    except BadPath as exc:
        return _error(400, f"invalid request path: {exc}")
    if path != literal and (_route_of(path) is None or _route_of(path) != _route_of(literal)):
        return _error(404, "route not found")
    request["path"] = path
    return None


# ---------------------------------------------------------------- middlewares

@web.middleware
async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, CORS, security headers, rate limit and access log, in that order."""
    started = time.perf_counter()
    headers = request.headers
    request_id = headers.get("X-Request-ID") or str(uuid.uuid4())
    request["request_id"] = request_id
    app = request.app
    settings = app[SETTINGS]
    origin = headers.get("Origin", "")
    allowed_origin = origin if origin in settings["cors_origins"] else ""

    if request.method == "OPTIONS" and headers.get("Access-Control-Request-Method"):
        response: web.StreamResponse = web.Response(status=204)
    else:
        ok, retry_after = app[LIMITER].check(rate_key(request))
        if not ok:
            response = web.json_response({"error": "rate limit exceeded"}, status=429,
                                         headers={"Retry-After": str(retry_after)})
        else:
            response = route_path(request) or await handler(request)

    if not response.prepared:
        out = response.headers
        out["X-Request-ID"] = request_id
        if allowed_origin:
            _set_cors(out, allowed_origin, request.method == "OPTIONS")
    access = app[ACCESS_LOG]
    if access.enabled:
        access.record(request_id, request.method, request.path, response.status,
                      client_ip(request), (time.perf_counter() - started) * 1000)
    return response


PREFLIGHT_HEADERS = (
    ("Access-Control-Allow-Methods", CORS_ALLOW_METHODS),
    ("Access-Control-Allow-Headers", CORS_ALLOW_HEADERS),
    ("Access-Control-Max-Age", "43200"),
)


def _set_cors(out: CIMultiDict, origin: str, preflight: bool = False) -> None:
    """The gateway's CORS headers for an allowed `origin` (replacing any of the same name)."""
    out["Access-Control-Allow-Origin"] = origin
    out["Access-Control-Allow-Credentials"] = "true"
    out["Access-Control-Expose-Headers"] = "Content-Length, X-Request-ID"
    out["Vary"] = "Origin"
    if preflight:
        for name, value in PREFLIGHT_HEADERS:
            out[name] = value


def _is_secure(request: web.Request) -> bool:
    secure = request.get("secure")
    if secure is None:
        secure = request["secure"] = client_is_secure(request)
    return secure


_EDGE_HEADERS: dict[tuple[bool, bool], tuple[tuple[str, str], ...]] = {}


def _edge_headers(path: str, secure: bool) -> tuple[tuple[str, str], ...]:
    """`edge_headers` depends only on whether the path is an auth path and on `secure`: it is
    computed once per combination."""
    key = (path == NO_STORE_PREFIX or path.startswith(NO_STORE_PREFIX + "/"), secure)
    found = _EDGE_HEADERS.get(key)
    if found is None:
        found = _EDGE_HEADERS[key] = tuple(edge_headers(path, secure).items())
    return found


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Edge headers on every response the gateway sends, proxied and streamed ones included:
    no software version in `Server`, `no-store` on auth answers, HSTS only over HTTPS."""
    secure = _is_secure(request)
    out = response.headers
    for name, value in _edge_headers(request.get("path", request.path), secure):
        if name in ("Server", "Cache-Control"):
            out[name] = value
        else:
            out.setdefault(name, value)
    if not secure:
        out.popall("Strict-Transport-Security", None)


# ---------------------------------------------------------------- health

async def _probe(session: aiohttp.ClientSession, url: str) -> tuple[bool, str]:
    try:
        async with session.get(url + "/health", timeout=aiohttp.ClientTimeout(total=5)) as resp:
            if resp.status == 200:
                return True, ""
            return False, f"status {resp.status}"
    except Exception as exc:
        return False, str(exc) or type(exc).__name__


async def health(request: web.Request) -> web.Response:
    upstreams: dict[str, Upstream] = request.app[UPSTREAMS]
    session = request.app[SESSION]
    urls = sorted({u for up in upstreams.values() for u in up.urls})
    results = dict(zip(urls, await asyncio.gather(*(_probe(session, u) for u in urls)),
                       strict=True))
    services = []
    for name, up in upstreams.items():
        failures = [f"{u}: {results[u][1]}" for u in up.urls if not results[u][0]]
        healthy = len(failures) < len(up.urls)  # one live worker serves the domain
        entry = {"name": name, "status": "healthy" if healthy else "unhealthy"}
        if not healthy:
            entry["error"] = "; ".join(failures)
        services.append(entry)
    all_healthy = all(s["status"] == "healthy" for s in services)
    return web.json_response(
        {"status": "healthy" if all_healthy else "degraded", "service": "api-gateway",
         "services": services},
        status=200 if all_healthy else 503,
    )


OPENAPI_PATH = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"


def _read_openapi(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


async def openapi_document(request: web.Request) -> web.StreamResponse:
    """The committed OpenAPI document of the whole public API (read at start-up)."""
    document = request.app[SETTINGS]["openapi"]
    if document is None:
        return _error(404, "route not found")
    return web.Response(body=document, content_type="application/json")


# ---------------------------------------------------------------- proxying

def _forward_headers(request: web.Request) -> CIMultiDict:
    headers: CIMultiDict = CIMultiDict()
    for k, v in request.headers.items():
        lower = k.lower()
        if lower not in HOP_BY_HOP and not lower.startswith("sec-websocket"):
            headers.add(k, v)
    prior = request.headers.get("X-Forwarded-For")
    remote = request.remote or ""
    headers["X-Forwarded-For"] = f"{prior}, {remote}" if prior else remote
    headers["X-Forwarded-Host"] = request.host
    headers["X-Forwarded-Proto"] = "https" if _is_secure(request) else "http"
    # The client address as resolved here (trusted proxies only); replaces any the client sent.
    # Workers believe it (sign-in throttle) because only the gateway reaches them.
    headers["X-Real-IP"] = client_ip(request)
    headers["X-Request-ID"] = request["request_id"]
    return headers


def _response_headers(src: CIMultiDict) -> CIMultiDict:
    out: CIMultiDict = CIMultiDict()
    for name, value in src.items():
        lower = name.lower()
        # Upstream CORS headers are dropped: the gateway owns CORS (no duplicated headers).
        if lower in HOP_BY_HOP or lower in EDGE_OWNED or lower.startswith("access-control-"):
            continue
        out.add(name, value)
    return out


def request_target(request: web.Request) -> str:
    """The request target sent upstream: the normalised path encoded again (so the upstream
    decodes exactly the path that was routed) and the query string as received."""
    query = request.rel_url.raw_query_string
    return encode_path(request.get("path", request.path)) + ("?" + query if query else "")


def upstream_url(base: str, request: web.Request) -> URL:
    return URL(base + request_target(request), encoded=True)


def _give_up(name: str, failure: Failure | None) -> web.Response:
    log.warning("upstream %s: no worker answered (%s)", name, failure.value if failure else "-")
    if failure is Failure.TIMEOUT:
        return _error(504, "upstream timeout")
    return _error(502, "upstream service unavailable")


async def proxy(request: web.Request) -> web.StreamResponse:
    name = match(request.get("path", request.path))
    if name is None:
        return _error(404, "route not found")
    upstream: Upstream = request.app[UPSTREAMS][name]
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await tunnel_websocket(request, upstream)
    headers = _forward_headers(request)
    # Bodiless requests (most of the traffic) take the lean client; bodies stream via aiohttp.
    exchange = _lean_exchange if not request.body_exists else _aiohttp_exchange
    response, failure = await failover(
        request.app[BALANCER], upstream, request.method,
        lambda base: exchange(request, base, headers, name))
    return response if response is not None else _give_up(name, failure)


async def _lean_exchange(request: web.Request, base: str, headers: CIMultiDict,
                         name: str) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    answer = await request.app[LEAN].request(
        base, request.method, request_target(request), header_lines(headers),
        settings["timeout"], BUFFER_LIMIT)
    try:
        return await _relay_answer(request, answer, name)
    except BaseException:
        answer.abort()
        raise


async def _aiohttp_exchange(request: web.Request, base: str, headers: CIMultiDict,
                            name: str) -> web.StreamResponse:
    upstream_resp = await request.app[SESSION].request(
        request.method, upstream_url(base, request), headers=headers, data=request.content,
        allow_redirects=False, timeout=request.app[SETTINGS]["client_timeout"])
    try:
        return await _relay(request, upstream_resp, name)
    finally:
        upstream_resp.release()


def _streamed(request: web.Request, status: int, reason: str,
              headers: CIMultiDict) -> web.StreamResponse:
    """A response whose headers are sent before the body is known: the edge's own headers
    (request id, CORS) go on it here, since the middleware sees it already sent."""
    response = web.StreamResponse(status=status, reason=reason,
                                  headers=_response_headers(headers))
    response.headers["X-Request-ID"] = request["request_id"]
    origin = request.headers.get("Origin", "")
    if origin in request.app[SETTINGS]["cors_origins"]:
        _set_cors(response.headers, origin)
    length = headers.get("Content-Length")
    if length is not None and length.isdigit():
        response.content_length = int(length)
    return response


async def _relay_answer(request: web.Request, answer: Answer, name: str) -> web.StreamResponse:
    """The client's answer from the lean client's: a body read whole goes in one write;
    anything else is streamed as it comes."""
    status = answer.status
    if answer.body is not None and request.method != "HEAD" and status not in (204, 304):
        return web.Response(status=status, reason=answer.reason, body=answer.body,
                            headers=_response_headers(answer.headers))
    response = _streamed(request, status, answer.reason, answer.headers)
    await response.prepare(request)
    if answer.body is None:
        try:
            async for chunk in answer.stream():
                await response.write(chunk)
        except (UpstreamError, ConnectionResetError, ValueError):
            log.warning("upstream %s broke off a response", name)
            return response
    await response.write_eof()
    return response


async def _relay(request: web.Request, upstream_resp: aiohttp.ClientResponse,
                 name: str) -> web.StreamResponse:
    """The client's answer from aiohttp's. A small answer of known size is read whole and
    returned unsent (one write to the client); anything else is streamed as it comes. Raises
    the upstream client's errors only while nothing was sent."""
    status = upstream_resp.status
    length = upstream_resp.headers.get("Content-Length")
    if (length is not None and length.isdigit() and int(length) <= BUFFER_LIMIT
            and request.method != "HEAD" and status >= 200 and status not in (204, 304)):
        data = await upstream_resp.read()
        return web.Response(status=status, reason=upstream_resp.reason, body=data,
                            headers=_response_headers(upstream_resp.headers))
    response = _streamed(request, status, upstream_resp.reason or "", upstream_resp.headers)
    await response.prepare(request)
    try:
        async for chunk in upstream_resp.content.iter_chunked(64 * 1024):
            await response.write(chunk)
    except (TimeoutError, aiohttp.ClientError, ConnectionResetError):
        log.warning("upstream %s broke off a response", name)
        return response
    await response.write_eof()
    return response


async def tunnel_websocket(request: web.Request, upstream: Upstream) -> web.StreamResponse:
    """Connect upstream first (so its 4xx reaches the client), then pump frames both ways. The
    handshake goes to a worker known to be up, and to the next one when it fails (opening a
    WebSocket changes nothing on the worker)."""
    app = request.app
    session = app[SESSION]
    balancer = app[BALANCER]
    headers = {k: v for k, v in _forward_headers(request).items()
               if k.lower() in ("authorization", "x-forwarded-for", "x-request-id", "origin")}

    async def attempt(base: str):
        target = upstream_url(base.replace("http", "ws", 1), request)
        try:
            async with asyncio.timeout(app[SETTINGS]["timeout"]):
                return base, await session.ws_connect(target, headers=headers, autoping=True,
                                                      heartbeat=30, max_msg_size=1 << 20)
        except aiohttp.WSServerHandshakeError as exc:
            return base, exc  # the worker answered: a refusal, not a failure

    # An upgrade is a GET: after a timeout it is tried on the next worker that is up.
    result, failure = await failover(balancer, upstream, "GET", attempt)
    if result is None:
        return _give_up(upstream.name, failure)
    base, upstream_ws = result
    if isinstance(upstream_ws, aiohttp.WSServerHandshakeError):
        return await _replay_refusal(request, base, headers, upstream_ws)
    return await _pump(request, upstream_ws)


async def _replay_refusal(request: web.Request, base: str, headers: dict[str, str],
                          exc: aiohttp.WSServerHandshakeError) -> web.Response:
    """The worker refused the upgrade: ask again without it, to pass its answer's body on."""
    session = request.app[SESSION]
    try:
        async with session.get(upstream_url(base, request), headers=headers,
                               timeout=request.app[SETTINGS]["client_timeout"]) as resp:
            body = await resp.read()
            return web.Response(status=exc.status, body=body,
                                content_type=resp.content_type or "application/json")
    except (aiohttp.ClientError, TimeoutError):
        return _error(exc.status, "websocket refused")


async def _pump(request: web.Request,
                upstream_ws: aiohttp.ClientWebSocketResponse) -> web.StreamResponse:
    client_ws = web.WebSocketResponse(autoping=True, heartbeat=30, max_msg_size=1 << 20)
    await client_ws.prepare(request)

    async def pump(src, dst) -> None:
        async for msg in src:
            if msg.type == WSMsgType.TEXT:
                await dst.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await dst.send_bytes(msg.data)
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED,
                              WSMsgType.ERROR):
                break

    tasks = [asyncio.ensure_future(pump(client_ws, upstream_ws)),
             asyncio.ensure_future(pump(upstream_ws, client_ws))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await upstream_ws.close()
        await client_ws.close(code=_relayable(upstream_ws.close_code))
    return client_ws


def _relayable(code: int | None) -> int:
    """The worker's close code, passed on to the client (e.g. 4401: the session ended, sign in
    again), unless it is one a close frame must not carry (1005/1006/1015) or none."""
    if code is not None and (1000 <= code <= 1003 or 1007 <= code <= 1014
                             or 3000 <= code <= 4999):
        return code
    return 1000


# ---------------------------------------------------------------- app

def create_app(env: dict[str, str] | None = None) -> web.Application:
    env = dict(os.environ if env is None else env)
    app = web.Application(middlewares=[edge], client_max_size=10 * 1024 * 1024)
    app[UPSTREAMS] = upstreams_from_env(env)
    app[LIMITER] = SlidingWindowLimiter(
        int(env.get("RATE_LIMIT_PER_MIN", 100)), float(env.get("RATE_LIMIT_WINDOW_S", 60)))
    timeout = float(env.get("GATEWAY_TIMEOUT_S", 30))
    app[SETTINGS] = {
        "cors_origins": {o.strip() for o in env.get("CORS_ORIGINS", DEFAULT_ORIGINS).split(",")
                         if o.strip()},
        "trusted_proxies": {p.strip() for p in env.get("GATEWAY_TRUSTED_PROXIES", "").split(",")
                            if p.strip()},
        "timeout": timeout,
        # 5 s to connect, `timeout` between reads of the upstream's answer.
        "client_timeout": aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=timeout),
        "openapi": _read_openapi(Path(env.get("KILAT_OPENAPI_PATH", OPENAPI_PATH))),
        # The workers' secret (the same rule and file), to verify tokens for the rate limit.
        "tokens": VerifiedTokens(jwt_secret(env)),
    }
    app[BALANCER] = Balancer(
        sorted({u for up in app[UPSTREAMS].values() for u in up.urls}),
        eject_after=int(env.get("GATEWAY_EJECT_AFTER", 2)),
        probe_interval=float(env.get("GATEWAY_PROBE_INTERVAL_S", 0.5)),
        probe_max=float(env.get("GATEWAY_PROBE_MAX_S", 5)),
        probe_timeout=min(2.0, timeout),
    )
    app[ACCESS_LOG] = AccessLog(access_log)
    app[LEAN] = LeanClient(connect_timeout=5.0)

    async def open_session(app: web.Application) -> None:
        app[SESSION] = aiohttp.ClientSession(
            auto_decompress=False, skip_auto_headers=("User-Agent", "Accept-Encoding"),
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=30),
        )
        app[BALANCER].session = app[SESSION]
        app[ACCESS_LOG].start()

    async def close_session(app: web.Application) -> None:
        await app[BALANCER].close()
        app[LEAN].close()
        await app[SESSION].close()
        await app[ACCESS_LOG].close()

    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    app.on_response_prepare.append(security_headers)
    app.router.add_get("/health", health)
    app.router.add_get("/openapi.json", openapi_document)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


def _event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (a cheaper event loop, transports written in C), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def serve(app: web.Application, host: str, port: int, fast_path: bool = True) -> None:
    """Serve until SIGINT or SIGTERM. With `fast_path`, client connections start on
    gateway/fastpath.py's protocol, which hands anything it does not serve to the aiohttp
    application; without, aiohttp serves every request."""
    from gateway.fastpath import protocol_factory

    loop = asyncio.get_running_loop()
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    connections: set = set()
    factory = protocol_factory(app, runner.server, connections) if fast_path else runner.server
    server = await loop.create_server(factory, host, port, reuse_address=True, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        server.close()
        for conn in list(connections):
            conn.close()
        await runner.cleanup()


def main() -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    port = int(os.environ.get("GATEWAY_PORT", 8080))
    # The public edge binds every interface only where that is the point (production, or told
    # so); a development install stays on the loopback interface.
    default_host = "0.0.0.0" if environment(os.environ) == "production" else "127.0.0.1"
    host = os.environ.get("GATEWAY_HOST") or default_host
    fast_path = os.environ.get("GATEWAY_FAST_PATH", "1") != "0"
    app = create_app()
    loop = _event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(serve(app, host, port, fast_path))
    finally:
        loop.close()


if __name__ == "__main__":
    main()
