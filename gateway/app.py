"""Kilat API gateway (:8080): path normalisation, prefix routing, streaming reverse proxy,
WebSocket tunnelling, per-client rate limiting, CORS, request ids and aggregated health.

Run with `kilat-gateway` (or `python -m gateway.app`). Settings come from the environment:
`GATEWAY_HOST` (127.0.0.1, 0.0.0.0 in production), `GATEWAY_PORT` (8080), `KILAT_UPSTREAM` /
`UPSTREAM_<NAME>`, `RATE_LIMIT_PER_MIN` (100), `RATE_LIMIT_WINDOW_S` (60), `CORS_ORIGINS`,
`GATEWAY_TRUSTED_PROXIES`, `GATEWAY_TIMEOUT_S` (30), and the JWT secret like the workers
(`JWT_SECRET`, else the install's `KILAT_SECRET_FILE`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
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
from core.headers import came_over_https, edge_headers
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

UPSTREAMS = web.AppKey("upstreams", dict)
SESSION = web.AppKey("session", aiohttp.ClientSession)
LIMITER = web.AppKey("limiter", SlidingWindowLimiter)
SETTINGS = web.AppKey("settings", dict)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message, "success": False}, status=status, headers=headers)


def client_ip(request: web.Request) -> str:
    """The client address; X-Forwarded-For is believed only from a trusted proxy."""
    remote = request.remote or ""
    trusted = request.app[SETTINGS]["trusted_proxies"]
    forwarded = request.headers.get("X-Forwarded-For")
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
    secret = request.app[SETTINGS]["jwt_secret"]
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else request.query.get("token")
    if secret and token:
        try:
            claims = jwt.decode(token, secret, algorithms=["HS256"],
                                issuer=Settings.jwt_issuer,
                                options={"require": ["exp", "iat", "sub"]})
            if claims.get("token_type") == "access" and claims.get("user_id"):
                return "user:" + str(claims["user_id"])
        except jwt.PyJWTError:
            pass
    return "ip:" + client_ip(request)


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
    request_id = request.headers.get("X-Request-ID") or str(uuid.uuid4())
    request["request_id"] = request_id
    settings = request.app[SETTINGS]
    origin = request.headers.get("Origin", "")
    allowed_origin = origin if origin in settings["cors_origins"] else ""

    if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
        response: web.StreamResponse = web.Response(status=204)
    else:
        ok, retry_after = request.app[LIMITER].check(rate_key(request))
        if not ok:
            response = web.json_response({"error": "rate limit exceeded"}, status=429,
                                         headers={"Retry-After": str(retry_after)})
        else:
            response = route_path(request) or await handler(request)

    if not response.prepared:
        response.headers["X-Request-ID"] = request_id
        if allowed_origin:
            response.headers["Access-Control-Allow-Origin"] = allowed_origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Access-Control-Expose-Headers"] = "Content-Length, X-Request-ID"
            response.headers["Vary"] = "Origin"
            if request.method == "OPTIONS":
                response.headers["Access-Control-Allow-Methods"] = CORS_ALLOW_METHODS
                response.headers["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
                response.headers["Access-Control-Max-Age"] = "43200"
    access_log.info(json.dumps({
        "request_id": request_id, "method": request.method, "path": request.path,
        "status": response.status, "client": client_ip(request),
        "ms": round((time.perf_counter() - started) * 1000, 2),
    }))
    return response


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Edge headers on every response the gateway sends, proxied and streamed ones included:
    no software version in `Server`, `no-store` on auth answers, HSTS only over HTTPS."""
    secure = client_is_secure(request)
    for name, value in edge_headers(request.get("path", request.path), secure).items():
        if name in ("Server", "Cache-Control"):
            response.headers[name] = value
        else:
            response.headers.setdefault(name, value)
    if not secure:
        response.headers.pop("Strict-Transport-Security", None)


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
    headers = CIMultiDict(
        (k, v) for k, v in request.headers.items()
        if k.lower() not in HOP_BY_HOP and not k.lower().startswith("sec-websocket")
    )
    prior = request.headers.get("X-Forwarded-For")
    remote = request.remote or ""
    headers["X-Forwarded-For"] = f"{prior}, {remote}" if prior else remote
    headers["X-Forwarded-Host"] = request.host
    headers["X-Forwarded-Proto"] = "https" if client_is_secure(request) else "http"
    # The client address as resolved here (trusted proxies only); replaces any the client sent.
    # Workers believe it (sign-in throttle) because only the gateway reaches them.
    headers["X-Real-IP"] = client_ip(request)
    headers["X-Request-ID"] = request["request_id"]
    return headers


def _copy_response_headers(src: CIMultiDict, dst: web.StreamResponse) -> None:
    for name, value in src.items():
        lower = name.lower()
        # Upstream CORS headers are dropped: the gateway owns CORS (no duplicated headers).
        if lower in HOP_BY_HOP or lower in EDGE_OWNED or lower.startswith("access-control-"):
            continue
        dst.headers.add(name, value)


def upstream_url(base: str, request: web.Request) -> URL:
    """The upstream URL for the request: its normalised path encoded again (so the upstream
    decodes exactly the path that was routed) and its query string as received."""
    query = request.rel_url.raw_query_string
    target = base + encode_path(request.get("path", request.path)) + ("?" + query if query else "")
    return URL(target, encoded=True)


async def proxy(request: web.Request) -> web.StreamResponse:
    name = match(request.get("path", request.path))
    if name is None:
        return _error(404, "route not found")
    upstream: Upstream = request.app[UPSTREAMS][name]
    base = upstream.pick()
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await tunnel_websocket(request, base)
    session = request.app[SESSION]
    timeout = request.app[SETTINGS]["timeout"]
    body = request.content if request.body_exists else None
    try:
        upstream_resp = await session.request(
            request.method, upstream_url(base, request),
            headers=_forward_headers(request), data=body, allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=timeout),
        )
    except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError,
            aiohttp.ClientOSError) as exc:
        log.warning("upstream %s (%s) unavailable: %s", name, base, exc)
        return _error(502, "upstream service unavailable")
    except TimeoutError:
        return _error(504, "upstream timeout")
    async with upstream_resp:
        response = web.StreamResponse(status=upstream_resp.status, reason=upstream_resp.reason)
        _copy_response_headers(upstream_resp.headers, response)
        response.headers["X-Request-ID"] = request["request_id"]
        origin = request.headers.get("Origin", "")
        if origin in request.app[SETTINGS]["cors_origins"]:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Access-Control-Expose-Headers"] = "Content-Length, X-Request-ID"
            response.headers["Vary"] = "Origin"
        if upstream_resp.headers.get("Content-Length") is not None:
            response.content_length = int(upstream_resp.headers["Content-Length"])
        await response.prepare(request)
        try:
            async for chunk in upstream_resp.content.iter_chunked(64 * 1024):
                await response.write(chunk)
        except (TimeoutError, aiohttp.ClientPayloadError, ConnectionResetError):
            log.warning("upstream %s broke off a response", name)
            return response
        await response.write_eof()
        return response


async def tunnel_websocket(request: web.Request, base: str) -> web.StreamResponse:
    """Connect upstream first (so its 4xx reaches the client), then pump frames both ways."""
    session = request.app[SESSION]
    target = upstream_url(base.replace("http", "ws", 1), request)
    headers = {k: v for k, v in _forward_headers(request).items()
               if k.lower() in ("authorization", "x-forwarded-for", "x-request-id", "origin")}
    try:
        upstream_ws = await session.ws_connect(target, headers=headers, autoping=True,
                                               heartbeat=30, max_msg_size=1 << 20)
    except aiohttp.WSServerHandshakeError as exc:
        # Replay the refusal with its body: ask again without the upgrade.
        try:
            async with session.get(upstream_url(base, request), headers=headers) as resp:
                body = await resp.read()
                return web.Response(status=exc.status, body=body,
                                    content_type=resp.content_type or "application/json")
        except aiohttp.ClientError:
            return _error(exc.status, "websocket refused")
    except (aiohttp.ClientConnectorError, aiohttp.ClientOSError):
        return _error(502, "upstream service unavailable")

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
    app[SETTINGS] = {
        "cors_origins": {o.strip() for o in env.get("CORS_ORIGINS", DEFAULT_ORIGINS).split(",")
                         if o.strip()},
        "trusted_proxies": {p.strip() for p in env.get("GATEWAY_TRUSTED_PROXIES", "").split(",")
                            if p.strip()},
        "timeout": float(env.get("GATEWAY_TIMEOUT_S", 30)),
        "openapi": _read_openapi(Path(env.get("KILAT_OPENAPI_PATH", OPENAPI_PATH))),
        # The workers' secret (the same rule and file), to verify tokens for the rate limit.
        "jwt_secret": jwt_secret(env),
    }

    async def open_session(app: web.Application) -> None:
        app[SESSION] = aiohttp.ClientSession(
            auto_decompress=False,
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=30),
        )

    async def close_session(app: web.Application) -> None:
        await app[SESSION].close()

    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    app.on_response_prepare.append(security_headers)
    app.router.add_get("/health", health)
    app.router.add_get("/openapi.json", openapi_document)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


def main() -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    port = int(os.environ.get("GATEWAY_PORT", 8080))
    # The public edge binds every interface only where that is the point (production, or told
    # so); a development install stays on the loopback interface.
    default_host = "0.0.0.0" if environment(os.environ) == "production" else "127.0.0.1"
    host = os.environ.get("GATEWAY_HOST") or default_host
    web.run_app(create_app(), host=host, port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
