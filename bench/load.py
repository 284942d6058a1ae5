"""Load: N concurrent API clients through the gateway plus a GPS stream, for a fixed time.

Starts its own deployment (private database and topics on the local Kafka/PostgreSQL, two
workers, the gateway) unless `--base-url` points at a running one, then:
  * `--clients` simulated app users (owners and runners) sign up and loop over typical calls
    (profile, booking list, nearby runners and shops, notifications), and
  * a producer sends `--gps-rate` runner.location_update events per second to runner.events,
for `--seconds`. Prints requests, errors by status, p50/p99 latency per call, GPS events sent
and GPS events persisted, and exits non-zero on any 5xx or transport error.

    .venv/bin/python -m bench.load --clients 200 --gps-rate 1000 --seconds 120
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaProducer

from models.events import new_event
from tests.platform import KAFKA, Platform

CALLS = (
    ("GET", "/api/v1/auth/profile"),
    ("GET", "/api/v1/bookings?page=1&limit=10"),
    ("GET", "/api/v1/runners/nearby?latitude=3.139&longitude=101.6869&radius_km=5"),
    ("GET", "/api/v1/petshops/nearby?latitude=3.139&longitude=101.6869"),
    ("GET", "/api/v1/notifications?page=1&limit=10"),
)


class Stats:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = collections.defaultdict(list)
        self.status: collections.Counter = collections.Counter()
        self.transport_errors = 0


async def client_loop(base: str, session: aiohttp.ClientSession, stats: Stats, role: str,
                      stop_at: float, think_s: float = 0.0) -> None:
    """Sign up, then call the app's usual reads in turn until `stop_at`, pausing `think_s`
    between calls (0: as fast as answers come)."""
    email = f"load-{uuid.uuid4().hex[:12]}@kilat.test"
    async with session.post(base + "/api/v1/auth/register", json={
            "email": email, "password": "Secret123!", "full_name": "Load", "role": role,
            "phone": "+60123456789"}) as resp:
        stats.status[resp.status] += 1
        if resp.status != 201:
            return
        token = (await resp.json())["data"]["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    i = 0
    while time.monotonic() < stop_at:
        method, path = CALLS[i % len(CALLS)]
        i += 1
        t0 = time.perf_counter()
        try:
            async with session.request(method, base + path, headers=headers) as resp:
                await resp.read()
                stats.status[resp.status] += 1
        except (TimeoutError, aiohttp.ClientError):
            stats.transport_errors += 1
            continue
        stats.latency[path.split("?")[0]].append(time.perf_counter() - t0)
        if think_s:
            await asyncio.sleep(think_s)


async def gps_stream(topic: str, rate: int, stop_at: float, runners: int = 200) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, linger_ms=5, acks=1)
    await producer.start()
    ids = [str(uuid.uuid4()) for _ in range(runners)]
    sent = 0
    try:
        start = time.monotonic()
        while time.monotonic() < stop_at:
            due = int((time.monotonic() - start) * rate)
            while sent < due:
                runner = ids[sent % runners]
                event = new_event("load", "runner.location_update", {
                    "runner_id": runner, "latitude": 3.1 + (sent % 1000) * 1e-5,
                    "longitude": 101.69, "speed_kmh": 25.0, "heading_degrees": 10.0,
                    "timestamp": 1_795_600_000 + sent / rate})
                await producer.send(topic, event.to_json(), key=runner.encode())
                sent += 1
            await asyncio.sleep(0.01)
        await producer.flush()
        return sent
    finally:
        await producer.stop()


def pct(values: list[float], p: int) -> float:
    if len(values) < 2:
        return values[0] * 1000 if values else 0.0
    return statistics.quantiles(values, n=100)[p - 1] * 1000


async def run(args: argparse.Namespace) -> int:
    platform = None
    base = args.base_url
    topic = "runner.events"
    if base is None:
        platform = Platform(Path(tempfile.mkdtemp(prefix="kilat-load-")))
        platform.create_database()
        for name in ("w1", "w2"):
            await platform.wait_ready(platform.start_worker(name))
        gw = platform.start_gateway(RATE_LIMIT_PER_MIN=str(args.rate_limit))
        await platform.wait_ready(gw, "/health")
        base, topic = platform.base_url, platform.topic("runner.events")
    stats = Stats()
    stop_at = time.monotonic() + args.seconds
    connector = aiohttp.TCPConnector(limit=args.clients + 10)
    try:
        async with aiohttp.ClientSession(connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=30)) as session:
            roles = ["owner", "runner"]
            tasks = [client_loop(base, session, stats, roles[i % 2], stop_at)
                     for i in range(args.clients)]
            results = await asyncio.gather(gps_stream(topic, args.gps_rate, stop_at), *tasks)
        sent = results[0]
        persisted = None
        if platform is not None:
            rows = platform.sql("SELECT count(*) AS n FROM runner_locations")
            persisted = rows[0]["n"]
        total = sum(stats.status.values())
        print(f"clients {args.clients}  seconds {args.seconds}  requests {total} "
              f"({total / args.seconds:.0f}/s)")
        print("status  " + "  ".join(f"{k}: {v}" for k, v in sorted(stats.status.items())))
        print(f"transport errors {stats.transport_errors}")
        for path, lat in sorted(stats.latency.items()):
            print(f"  {path:42s} n={len(lat):6d}  p50 {pct(lat, 50):7.1f} ms  "
                  f"p99 {pct(lat, 99):7.1f} ms")
        print(f"gps events sent {sent} ({sent / args.seconds:.0f}/s); runners persisted "
              f"{persisted}")
        server_errors = sum(v for k, v in stats.status.items() if k >= 500)
        return 1 if server_errors or stats.transport_errors else 0
    finally:
        if platform is not None:
            platform.stop_all()
            platform.drop_database()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--gps-rate", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--rate-limit", type=int, default=100,
                        help="gateway limit per client per minute (429s are expected above it)")
    parser.add_argument("--base-url", default=None)
    raise SystemExit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
