"""The gateway as a running process in front of recording upstreams (and a real worker).

Each upstream name gets its own small aiohttp server that answers with its name, so routing of
every prefix is observable; WebSocket, streaming, CORS, rate limit and failure behaviour are
exercised with real clients.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import jwt
import pytest
from aiohttp import WSMsgType, web
from yarl import URL

from gateway.routes import PREFIXES, UPSTREAM_NAMES
from tests.platform import JWT_SECRET, ROOT, VENV_BIN, Fatal, Proc, free_port, wait_until


class Upstream:
    """A recording upstream: echoes name, method, path, headers and body size."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = free_port()
        self.ws_closed = asyncio.Event()
        self.requests: list[dict] = []
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self.websocket(request)
        body = await request.read()
        self.requests.append({"path": request.path_qs, "headers": dict(request.headers)})
        if request.path.endswith("/big"):
            resp = web.StreamResponse()
            await resp.prepare(request)
            for _ in range(64):
                await resp.write(b"x" * 65536)
            await resp.write_eof()
            return resp
        return web.json_response(
            {"upstream": self.name, "method": request.method, "path": request.path_qs,
             "body_len": len(body), "xff": request.headers.get("X-Forwarded-For"),
             "connection": request.headers.get("Connection")},
            headers={"Access-Control-Allow-Origin": "*", "X-Upstream": self.name},
        )

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(f"hello from {self.name} {request.query_string}")
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                if msg.data == "close-please":
                    await ws.close()
                    break
                await ws.send_str("echo:" + msg.data)
        self.ws_closed.set()
        return ws

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()


def start_gateway(tmp: Path, env: dict[str, str]) -> Proc:
    port = free_port()
    log = tmp / f"gateway-{port}.log"
    full = dict(os.environ, GATEWAY_PORT=str(port), GATEWAY_HOST="127.0.0.1",
                PYTHONPATH=str(ROOT))
    full.update(env)
    popen = subprocess.Popen([str(VENV_BIN / "kilat-gateway")], cwd=ROOT, env=full,
                             stdout=log.open("ab"), stderr=subprocess.STDOUT,
                             start_new_session=True)
    return Proc("gateway", popen, log, port)


async def wait_http(url: str) -> None:
    async def up() -> bool:
        async with aiohttp.ClientSession() as s, s.get(url) as r:
            return r.status < 500 or r.status == 503
    await wait_until(up, 30, 0.1, f"{url} answering")


@pytest.fixture(scope="module")
async def upstreams() -> AsyncIterator[dict[str, Upstream]]:
    ups = {name: Upstream(name) for name in UPSTREAM_NAMES}
    for up in ups.values():
        await up.start()
    yield ups
    for up in ups.values():
        await up.stop()


@pytest.fixture(scope="module")
async def gateway(upstreams, tmp_path_factory) -> AsyncIterator[Proc]:
    env = {f"UPSTREAM_{n.upper()}": f"http://127.0.0.1:{u.port}" for n, u in upstreams.items()}
    env.update(RATE_LIMIT_PER_MIN="100000", GATEWAY_TRUSTED_PROXIES="127.0.0.1")
    proc = start_gateway(tmp_path_factory.mktemp("gw"), env)
    await wait_http(proc.url + "/health")
    yield proc
    proc.popen.terminate()
    proc.popen.wait(10)


@pytest.mark.parametrize(("prefix", "expected"), PREFIXES)
async def test_every_prefix_reaches_its_upstream(gateway, http, prefix, expected):
    path = prefix + "/some/thing?x=1"
    async with http.get(gateway.url + path) as resp:
        body = await resp.json()
    assert resp.status == 200
    assert body["upstream"] == expected
    assert body["path"] == path


async def test_unknown_paths_are_404_route_not_found(gateway, http):
    for path in ("/api/v1/unknown", "/api/v2/bookings", "/api/v1/bookingsX", "/"):
        async with http.get(gateway.url + path) as resp:
            assert resp.status == 404, path
            assert await resp.json() == {"error": "route not found", "success": False}


async def test_body_streams_both_ways_and_hop_by_hop_headers_are_dropped(gateway, http):
    payload = os.urandom(5 * 1024 * 1024)
    async with http.post(gateway.url + "/api/v1/bookings/upload", data=payload,
                         headers={"Connection": "keep-alive, X-Secret", "X-Secret": "1"}) as resp:
        body = await resp.json()
    assert body["body_len"] == len(payload)
    assert "X-Secret" not in (body["connection"] or "")
    async with http.get(gateway.url + "/api/v1/bookings/big") as resp:
        data = await resp.read()
    assert resp.status == 200 and len(data) == 64 * 65536


async def test_request_id_and_forwarded_for(gateway, http):
    async with http.get(gateway.url + "/api/v1/auth/x", headers={"X-Request-ID": "abc-1"}) as r:
        body = await r.json()
        assert r.headers["X-Request-ID"] == "abc-1"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert body["xff"] == "127.0.0.1"


async def test_cors_preflight_and_single_allow_origin(gateway, http):
    origin = "http://localhost:3000"
    async with http.options(gateway.url + "/api/v1/bookings", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization"}) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == origin
        assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    async with http.get(gateway.url + "/api/v1/bookings", headers={"Origin": origin}) as resp:
        assert resp.headers.getall("Access-Control-Allow-Origin") == [origin]
    async with http.get(gateway.url + "/api/v1/bookings",
                        headers={"Origin": "http://evil.example"}) as resp:
        assert "Access-Control-Allow-Origin" not in resp.headers


async def test_websocket_tunnel_both_ways_and_close_propagates(gateway, http, upstreams):
    tracking = upstreams["tracking"]
    async with http.ws_connect(gateway.url + "/ws/tracking/b1?token=t") as ws:
        first = await ws.receive_str(timeout=5)
        assert first == "hello from tracking token=t"
        for i in range(50):
            await ws.send_str(f"m{i}")
        got = [await ws.receive_str(timeout=5) for _ in range(50)]
        assert got == [f"echo:m{i}" for i in range(50)]
    await asyncio.wait_for(tracking.ws_closed.wait(), 5)  # client close reached upstream

    tracking.ws_closed.clear()
    async with http.ws_connect(gateway.url + "/ws/tracking/b2") as ws:
        await ws.receive_str(timeout=5)
        await ws.send_str("close-please")
        msg = await ws.receive(timeout=5)
        assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)  # upstream close reached client


async def test_health_aggregates_upstreams(gateway, http):
    async with http.get(gateway.url + "/health") as resp:
        body = await resp.json()
    assert resp.status == 200
    assert body["status"] == "healthy" and body["service"] == "api-gateway"
    assert sorted(s["name"] for s in body["services"]) == sorted(UPSTREAM_NAMES)


async def test_upstream_down_gives_502_and_degraded_health(upstreams, http, tmp_path):
    env = {f"UPSTREAM_{n.upper()}": f"http://127.0.0.1:{u.port}" for n, u in upstreams.items()}
    env["UPSTREAM_REVIEW"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    proc = start_gateway(tmp_path, env)
    try:
        await wait_http(proc.url + "/health")
        async with http.get(proc.url + "/api/v1/reviews/me") as resp:
            assert resp.status == 502
            assert await resp.json() == {"error": "upstream service unavailable",
                                         "success": False}
        async with http.get(proc.url + "/health") as resp:
            body = await resp.json()
        assert resp.status == 503 and body["status"] == "degraded"
        review = next(s for s in body["services"] if s["name"] == "review")
        assert review["status"] == "unhealthy" and review["error"]
        assert next(s for s in body["services"] if s["name"] == "booking")["status"] == "healthy"
    finally:
        proc.popen.terminate()
        proc.popen.wait(10)


def _token(secret: str, **claims: str) -> str:
    """An access token for a made-up user id, signed with `secret`."""
    now = int(time.time())
    return jwt.encode({"sub": "u", "user_id": str(uuid.uuid4()), "role": "owner",
                       "token_type": "access", "iss": "kilat-pet-runner", "iat": now,
                       "exp": now + 60, **claims}, secret, algorithm="HS256")


async def test_rate_limit_429_then_recovers_after_window(upstreams, http, tmp_path):
    env = {f"UPSTREAM_{n.upper()}": f"http://127.0.0.1:{u.port}" for n, u in upstreams.items()}
    env.update(RATE_LIMIT_PER_MIN="5", RATE_LIMIT_WINDOW_S="2",
               JWT_SECRET="gateway-test-secret-0123456789abcdef")
    proc = start_gateway(tmp_path, env)
    try:
        await wait_http(proc.url + "/health")

        async def exhausted() -> bool:
            async with http.get(proc.url + "/api/v1/bookings") as r:
                return r.status == 429
        await wait_until(exhausted, 10, 0.01, "limit reached")
        async with http.get(proc.url + "/api/v1/bookings") as resp:
            assert resp.status == 429
            assert await resp.json() == {"error": "rate limit exceeded"}
            assert 1 <= int(resp.headers["Retry-After"]) <= 2

        # Tokens the gateway cannot verify buy no budget, whatever user id they name.
        for secret in ("not-the-secret-0123456789abcdef0123456789", JWT_SECRET):
            async with http.get(proc.url + "/api/v1/bookings",
                                headers={"Authorization": f"Bearer {_token(secret)}"}) as resp:
                assert resp.status == 429
        async with http.get(proc.url + "/api/v1/bookings",
                            headers={"Authorization": "Bearer " + _token(
                                env["JWT_SECRET"], iss="someone-else")}) as resp:
            assert resp.status == 429

        # A signed-in user (verified token) has a budget of their own.
        async with http.get(proc.url + "/api/v1/bookings",
                            headers={"Authorization": f"Bearer {_token(env['JWT_SECRET'])}"}
                            ) as resp:
            assert resp.status == 200

        async def recovered() -> bool:
            async with http.get(proc.url + "/api/v1/bookings") as r:
                return r.status == 200
        await wait_until(recovered, 5, 0.2, "window passed")
    finally:
        proc.popen.terminate()
        proc.popen.wait(10)


async def test_forwarded_for_trusted_only_from_trusted_proxy(upstreams, http, tmp_path):
    env = {f"UPSTREAM_{n.upper()}": f"http://127.0.0.1:{u.port}" for n, u in upstreams.items()}
    env.update(RATE_LIMIT_PER_MIN="2", RATE_LIMIT_WINDOW_S="60")
    proc = start_gateway(tmp_path, env)  # no trusted proxies: X-Forwarded-For is ignored
    try:
        await wait_http(proc.url + "/health")  # uses one request of 127.0.0.1's budget
        statuses = []
        for i in range(3):
            async with http.get(proc.url + "/api/v1/bookings",
                                headers={"X-Forwarded-For": f"10.0.0.{i}"}) as r:
                statuses.append(r.status)
        assert statuses[-1] == 429  # spoofed addresses did not buy new budgets
    finally:
        proc.popen.terminate()
        proc.popen.wait(10)


async def test_edge_headers_server_and_hsts_from_a_trusted_proxy_only(gateway, http):
    # The recording upstream is aiohttp and says so in its Server header: never passed on.
    async with http.get(gateway.url + "/api/v1/bookings/x") as resp:
        assert resp.headers.getall("Server") == ["kilat"]
        assert "Strict-Transport-Security" not in resp.headers  # plain HTTP
        assert "Cache-Control" not in resp.headers
    async with http.post(gateway.url + "/api/v1/auth/login") as resp:
        assert resp.headers["Cache-Control"] == "no-store"
    # This gateway trusts 127.0.0.1 as a proxy: its word that the client used HTTPS counts,
    # and the upstream hears it too.
    async with http.get(gateway.url + "/api/v1/bookings/x",
                        headers={"X-Forwarded-Proto": "https"}) as resp:
        assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
    async with http.get(gateway.url + "/health", headers={"X-Forwarded-Proto": "https"}) as resp:
        assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
        assert resp.headers["Server"] == "kilat"


async def test_hsts_claims_of_an_untrusted_client_are_ignored(upstreams, http, tmp_path):
    env = {f"UPSTREAM_{n.upper()}": f"http://127.0.0.1:{u.port}" for n, u in upstreams.items()}
    proc = start_gateway(tmp_path, env)  # no trusted proxies
    try:
        await wait_http(proc.url + "/health")
        async with http.get(proc.url + "/api/v1/bookings/x",
                            headers={"X-Forwarded-Proto": "https"}) as resp:
            assert resp.status == 200
            assert "Strict-Transport-Security" not in resp.headers
            assert upstreams["booking"].requests[-1]["headers"]["X-Forwarded-Proto"] == "http"
    finally:
        proc.popen.terminate()
        proc.popen.wait(10)


async def _raw_get(http: aiohttp.ClientSession, url: str) -> tuple[int, dict]:
    async with http.get(URL(url, encoded=True)) as resp:
        return resp.status, await resp.json()


async def test_paths_are_normalised_before_routing(gateway, http, upstreams):
    seen = {name: len(up.requests) for name, up in upstreams.items()}
    # Dot segments (also percent-encoded) that leave the prefix they name: 404, never sent.
    for raw in ("/api/v1/auth/../../../metrics", "/api/v1/auth/%2e%2e/%2E%2E/%2e%2e/readiness",
                "/api/v1/bookings/.%2e/payments/x", "/api/v1/auth/../bookings",
                "/ws/tracking/../../api/v1/bookings", "/health/../api/v1/bookings",
                "/api/v1/bookings/../../../health"):
        assert await _raw_get(http, gateway.url + raw) == (
            404, {"error": "route not found", "success": False}), raw
    # Above the root, or a separator/NUL hidden in a segment: 400.
    for raw in ("/api/v1/../../../x", "/api/v1/bookings/..%2f..%2f..%2fmetrics",
                "/api/v1/bookings/a%2Fb", "/api/v1/bookings/a%5cb", "/api/v1/bookings/a%00"):
        status, body = await _raw_get(http, gateway.url + raw)
        assert status == 400 and body["success"] is False, raw
        assert body["error"].startswith("invalid request path"), raw
    # An absolute URL as request target (a proxy request) is not a path of ours either.
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(b"GET http://kilat/api/v1/auth/../../../metrics HTTP/1.1\r\nHost: kilat\r\n"
                 b"Connection: close\r\n\r\n")
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert {name: len(up.requests) for name, up in upstreams.items()} == seen
    # Inside its prefix, the path is resolved and forwarded as routed (query untouched).
    status, body = await _raw_get(
        http, gateway.url + "/api/v1/bookings/./x/%2e%2e/y%20z/../b%25c?q=%2e%2e/1")
    assert status == 200 and body["upstream"] == "booking"
    assert body["path"] == "/api/v1/bookings/b%25c?q=%2e%2e/1"


async def test_development_gateway_binds_the_loopback_interface_only(upstreams, tmp_path):
    """127.0.0.2 is loopback too, but a socket bound to 127.0.0.1 does not answer there."""
    env = {f"UPSTREAM_{n.upper()}": f"http://127.0.0.1:{u.port}" for n, u in upstreams.items()}

    async def answers(host: str, port: int) -> bool:
        try:
            _reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            return False
        writer.close()
        return True

    local = start_gateway(tmp_path, {**env, "KILAT_ENV": "development", "GATEWAY_HOST": ""})
    everywhere = start_gateway(tmp_path, {**env, "KILAT_ENV": "development",
                                          "GATEWAY_HOST": "0.0.0.0"})
    try:
        await wait_http(local.url + "/health")
        await wait_http(everywhere.url + "/health")
        assert await answers("127.0.0.2", everywhere.port)  # the probe can see a wide bind
        assert not await answers("127.0.0.2", local.port)
    finally:
        for proc in (local, everywhere):
            proc.popen.terminate()
            proc.popen.wait(10)


def test_production_gateway_refuses_to_start_without_a_jwt_secret(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET"}
    env.update(KILAT_ENV="production", GATEWAY_PORT=str(free_port()), PYTHONPATH=str(ROOT))
    result = subprocess.run([str(VENV_BIN / "kilat-gateway")], cwd=ROOT, env=env,
                            capture_output=True, timeout=60)
    assert result.returncode != 0
    assert b"JWT_SECRET must be set when KILAT_ENV=production" in result.stderr


# ---------------------------------------------------------------- a worker dies or freezes

# What a client sees when the gateway sent its request to a worker that is down (502) or frozen
# (504), or dropped it (0). A worker's own answer (a 503 while the shared PostgreSQL restarts
# under another test session, say) reached a live worker: the routing worked.
ROUTING_FAILURES = {0, 502, 504}


class Traffic:
    """Clients sending GETs through the gateway without pause, recording every answer."""

    def __init__(self, http: aiohttp.ClientSession, url: str, token: str, clients: int = 3):
        self.http, self.url, self.token = http, url, token
        self.answers: list[tuple[float, float, int]] = []  # (sent, answered, status)
        self.tasks = [asyncio.create_task(self._client()) for _ in range(clients)]

    async def _client(self) -> None:
        while True:
            sent = time.monotonic()
            try:
                async with self.http.get(self.url, headers={
                        "Authorization": f"Bearer {self.token}"}) as resp:
                    await resp.read()
                    status = resp.status
            except aiohttp.ClientError:
                status = 0
            self.answers.append((sent, time.monotonic(), status))
            await asyncio.sleep(0.005)  # pacing, so the workers keep some CPU for Kafka

    def since(self, t: float) -> list[tuple[float, float, int]]:
        return [a for a in self.answers if a[0] >= t]

    async def answered_since(self, t: float, n: int) -> None:
        async def enough() -> bool:
            return len(self.since(t)) >= n
        await wait_until(enough, 60, 0.1, f"{n} answers")

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def served(http: aiohttp.ClientSession, worker: Proc, route: str) -> float:
    """How many requests of `route` the worker answered (its own /metrics, asked directly)."""
    async with http.get(worker.url + "/metrics", timeout=aiohttp.ClientTimeout(total=2)) as r:
        text = await r.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("kilat_http_request_duration_seconds_count{")
               and f'route="{route}"' in line)


async def websockets_on(http: aiohttp.ClientSession, worker: Proc) -> float:
    async with http.get(worker.url + "/metrics", timeout=aiohttp.ClientTimeout(total=2)) as r:
        text = await r.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("kilat_websocket_connections "))


def ejected_at(gateway: Proc, worker: Proc, nth: int) -> float:
    """When the gateway logged ejecting the worker for the `nth` time (a figure, not a check)."""
    from datetime import datetime

    lines = [line for line in gateway.log_path.read_text(errors="replace").splitlines()
             if f"upstream {worker.url} ejected" in line]
    stamp = lines[nth - 1][:23]  # "%Y-%m-%d %H:%M:%S,mmm", local time
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


async def open_tracking_socket(http, base: str, booking_id: str, token: str):
    """A tracking WebSocket through the gateway. Refusals by a worker (503 while its tables
    recover after a rebalance) are waited out; a refusal by the gateway itself (502/504: it
    sent the upgrade to a worker that is down) fails at once."""
    url = base.replace("http", "ws", 1) + f"/ws/tracking/{booking_id}?token={token}"

    async def opened():
        try:
            return await http.ws_connect(url)
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (502, 504):
                raise Fatal(f"gateway answered {exc.status} to an upgrade") from None
            return None
    return await wait_until(opened, 60, 0.3, "tracking WebSocket open")


async def test_gateway_routes_around_a_killed_and_a_frozen_worker(fresh_platform, http):
    """Two workers behind the gateway. One is killed (-9), restarted, then frozen (SIGSTOP)
    and woken (SIGCONT) while clients keep sending requests: no request fails after the first
    failure (the GETs in flight are retried on the other worker), WebSocket upgrades go to the
    live worker, and the worker is taken back once it answers again."""
    from tests.test_tracking import insert_booking, user

    p = fresh_platform
    w1, w2 = p.start_worker("w1"), p.start_worker("w2")
    await p.wait_ready(w1)
    await p.wait_ready(w2)
    gw = p.start_gateway(RATE_LIMIT_PER_MIN="1000000", GATEWAY_TIMEOUT_S="2")
    await p.wait_ready(gw, "/health")
    owner = user("owner")
    booking_id = insert_booking(p, owner, user("runner"))
    route = "/api/v1/petshops"
    figures: dict[str, float] = {}

    traffic = Traffic(http, gw.url + route, owner.token)
    try:
        # Both workers serve (round robin).
        await wait_until(lambda: _both(http, w1, w2, route), 60, 0.2, "both workers serving")

        # ---- kill -9: connections are refused at once
        killed_at, killed_wall = time.monotonic(), time.time()
        os.killpg(w2.popen.pid, signal.SIGKILL)
        w2.popen.wait(10)
        await traffic.answered_since(killed_at, 200)
        after_kill = traffic.since(killed_at)
        failed = [a for a in after_kill if a[2] in ROUTING_FAILURES]
        assert len(failed) <= 1, failed[:5]
        figures["kill_requests"], figures["kill_failures"] = len(after_kill), len(failed)
        figures["kill_eject_s"] = ejected_at(gw, w2, 1) - killed_wall

        # WebSocket upgrades reach the live worker only.
        sockets = [await open_tracking_socket(http, gw.url, booking_id, owner.token)
                   for _ in range(3)]
        await wait_until(lambda: _equals(websockets_on(http, w1), 3), 10, 0.1, "3 sockets on w1")
        for ws in sockets:
            await ws.close()

        # The worker comes back on its address and is taken back (its /health answers before
        # its /readiness: figures are from its start and from its readiness).
        restarted_at = time.monotonic()
        w2 = p.start_worker("w2b", port=w2.port)
        await p.wait_ready(w2)
        ready_at = time.monotonic()
        await wait_until(lambda: served(http, w2, route), 60, 0.1, "restarted worker served")
        figures["restart_ready_s"] = ready_at - restarted_at
        figures["restart_served_s"] = time.monotonic() - restarted_at

        # ---- SIGSTOP: connections open, nothing answers (GATEWAY_TIMEOUT_S = 2 s)
        before = await served(http, w2, route)
        frozen_at, frozen_wall = time.monotonic(), time.time()
        os.killpg(w2.popen.pid, signal.SIGSTOP)
        try:
            await traffic.answered_since(frozen_at + 3, 100)
            after_freeze = traffic.since(frozen_at)
            failed = [a for a in after_freeze if a[2] in ROUTING_FAILURES]
            assert len(failed) <= 1, failed[:5]
            figures["freeze_requests"], figures["freeze_failures"] = (
                len(after_freeze), len(failed))
            figures["freeze_slowest_s"] = max(a[1] - a[0] for a in after_freeze)
            # Once the first timeout (2 s) ejected it, no request waits for the frozen worker.
            settled = [a for a in after_freeze if a[0] > frozen_at + 3]
            assert settled and max(a[1] - a[0] for a in settled) < 2, "still sent to frozen"
            figures["freeze_eject_s"] = ejected_at(gw, w2, 2) - frozen_wall
            ws = await asyncio.wait_for(
                open_tracking_socket(http, gw.url, booking_id, owner.token), 10)
            await wait_until(lambda: _equals(websockets_on(http, w1), 1), 10, 0.1,
                             "the socket on w1")
            await ws.close()
        finally:
            woken_at = time.monotonic()
            os.killpg(w2.popen.pid, signal.SIGCONT)
        await wait_until(lambda: _more(http, w2, route, before), 60, 0.1, "woken worker served")
        figures["freeze_readmit_s"] = time.monotonic() - woken_at
        # Over the whole run (kill, restart, freeze, wake): at most one failure per fault.
        failed = [a for a in traffic.answers if a[2] in ROUTING_FAILURES]
        assert len(failed) <= 2, failed[:5]
        figures["total_requests"], figures["total_failures"] = len(traffic.answers), len(failed)
        figures["worker_errors"] = sum(1 for a in traffic.answers
                                       if a[2] != 200 and a[2] not in ROUTING_FAILURES)
    finally:
        await traffic.stop()
    readmitted = [line.split("taken back after ")[1].split(" s")[0]
                  for line in gw.log_path.read_text(errors="replace").splitlines()
                  if "taken back after" in line]
    print("gateway failover figures:", {k: round(v, 3) for k, v in figures.items()},
          "ejected → taken back (s):", readmitted)


async def _async(value):
    return value


async def _equals(awaitable, expected) -> bool:
    return await awaitable == expected


async def _both(http, w1: Proc, w2: Proc, route: str) -> bool:
    return await served(http, w1, route) > 0 and await served(http, w2, route) > 0


async def _more(http, worker: Proc, route: str, before: float) -> bool:
    # The queued requests it answers on waking count too: wait for more than those.
    return await served(http, worker, route) > before + 10


async def test_one_connection_mixes_fast_and_handed_over_requests(gateway, http, upstreams):
    """Plain GETs are served by the fast path, anything else by the aiohttp application: on
    one keep-alive connection, pipelined, every answer comes back in order, the connection
    moves to aiohttp at the first request the fast path does not serve, and every request
    gets its access log line."""
    tag = uuid.uuid4().hex[:8]
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(
        f"GET /api/v1/bookings/a HTTP/1.1\r\nHost: kilat\r\nX-Request-ID: {tag}-1\r\n\r\n"
        f"HEAD /api/v1/bookings/big HTTP/1.1\r\nHost: kilat\r\nX-Request-ID: {tag}-2\r\n\r\n"
        f"POST /api/v1/bookings/b HTTP/1.1\r\nHost: kilat\r\nX-Request-ID: {tag}-3\r\n"
        f"Content-Length: 3\r\n\r\nabc"
        f"GET /api/v1/reviews/c HTTP/1.1\r\nHost: kilat\r\nX-Request-ID: {tag}-4\r\n"
        f"Connection: close\r\n\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 10)  # the last request closes the connection
    writer.close()
    heads = [part for part in raw.split(b"HTTP/1.1 ")[1:]]
    assert [h[:3] for h in heads] == [b"200"] * 4, raw[:500]
    assert raw.count(b'"upstream": "booking"') == 2 and b'"upstream": "review"' in raw
    assert b'"body_len": 3' in raw and b'"method": "POST"' in raw
    for n in range(1, 5):
        assert f"X-Request-ID: {tag}-{n}".encode() in raw
    for head in heads:
        assert b"Server: kilat" in head and b"X-Content-Type-Options: nosniff" in head
    assert b"Access-Control-Allow-Origin: *" not in raw  # the upstream's CORS never passes

    async def logged_all() -> bool:
        text = gateway.log_path.read_text(errors="replace")
        return all(f'"request_id": "{tag}-{n}"' in text for n in range(1, 5))
    await wait_until(logged_all, 10, 0.1, "four access log lines")


async def test_fast_path_edge_headers_cors_and_connection_close(gateway, http):
    origin = "http://localhost:3000"
    async with http.get(gateway.url + "/api/v1/auth/me", headers={"Origin": origin}) as resp:
        assert resp.status == 200
        assert resp.headers.getall("Access-Control-Allow-Origin") == [origin]
        assert resp.headers["Access-Control-Allow-Credentials"] == "true"
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["Server"] == "kilat" and "Date" in resp.headers
        assert resp.headers["X-Upstream"] == "identity"
        assert len(resp.headers["X-Request-ID"]) == 36
    async with http.head(gateway.url + "/api/v1/bookings/x") as resp:
        assert resp.status == 200 and int(resp.headers["Content-Length"]) > 0
    async with http.delete(gateway.url + "/api/v1/bookings/x",
                           headers={"Connection": "close"}) as resp:
        assert (await resp.json())["method"] == "DELETE"
        assert resp.headers.get("Connection", "").lower() == "close"
