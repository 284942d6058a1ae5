"""GPS pipeline benchmark: device fix → runner agent → trip agent → PostGIS + WebSocket frame.

Starts its own private platform (tests.platform.Platform: a fresh database, topic prefix and
`--workers` Faust worker processes on the real Kafka broker and PostgreSQL; `scripts/infra.sh up`
must have been run), opens `--bookings` accepted trips with one WebSocket client each (spread
over the workers), then measures two things:

1. Throughput: `--fixes` fixes per runner produced at once to `runner.events`; events/s =
   fixes / time until every waypoint is in PostGIS (and every frame reached its client).
2. Latency: `--paced` more fixes at `--rate` per second; GPS→WS latency = time the client
   received the `location_update` frame − time the fix was produced (same clock), p50/p99.

    .venv/bin/python -m bench.gps_bench                      # defaults: 2 workers, 20 x 100
    .venv/bin/python -m bench.gps_bench --workers 1 --bookings 50 --fixes 100

Runs in well under two minutes with the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaProducer

from tests.platform import JWT_SECRET, KAFKA, Platform, wait_until

os.environ.setdefault("JWT_SECRET", JWT_SECRET)

from core.security import issue_access_token  # noqa: E402  (after the secret is set)
from models.events import new_event  # noqa: E402

TRACE = [json.loads(line) for line in (Path(__file__).resolve().parent.parent / "tests"
                                       / "fixtures" / "gps_trace_5km.jsonl").read_text().splitlines()]
START = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def stamp(i: int) -> str:
    return (START + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")


class Trip:
    def __init__(self, p: Platform) -> None:
        self.booking_id = str(uuid.uuid4())
        self.owner_id, self.runner_id = str(uuid.uuid4()), str(uuid.uuid4())
        self.token = issue_access_token(self.owner_id, "bench@kilat.test", "owner")
        self.received: dict[str, float] = {}
        addr = json.dumps({"address": "KLCC", "latitude": 3.1579, "longitude": 101.7117})
        p.sql("INSERT INTO bookings (id, booking_number, owner_id, runner_id, status, pet_spec, "
              "crate_requirement, pickup_address, dropoff_address, pickup_location, "
              "estimated_price_cents) VALUES (%s, %s, %s, %s, 'accepted', '{}', '{}', %s, %s, "
              "ST_SetSRID(ST_MakePoint(101.7117, 3.1579), 4326)::geography, 1500)",
              (self.booking_id, "BK-" + uuid.uuid4().hex[:6].upper(), self.owner_id,
               self.runner_id, addr, addr))

    def fix(self, i: int) -> bytes:
        pt = TRACE[i % len(TRACE)]
        return new_event("device", "runner.location_update", {
            "runner_id": self.runner_id, "latitude": pt["latitude"],
            "longitude": pt["longitude"], "speed_kmh": pt["speed_kmh"],
            "heading_degrees": pt["heading_degrees"], "timestamp": stamp(i)}).to_json()

    async def listen(self, http: aiohttp.ClientSession, base: str) -> None:
        url = base.replace("http", "ws", 1) + f"/ws/tracking/{self.booking_id}?token={self.token}"
        self.ws = await http.ws_connect(url)

        async def run() -> None:
            async for msg in self.ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    frame = json.loads(msg.data)
                    if frame["type"] == "location_update":
                        self.received[frame["data"]["timestamp"]] = time.time()
        self.task = asyncio.create_task(run())


async def start_trips(p: Platform, trips: list[Trip], send) -> None:
    """Accept every trip's booking and assign its runner (the events the booking domain
    publishes), and wait until every trip is being tracked. `send(topic, key, value)` produces
    one message and returns its delivery future."""
    await asyncio.gather(*[await send("booking.events", tr.booking_id, new_event(
        "service-booking", "booking.accepted", {
            "booking_id": tr.booking_id, "booking_number": "BK-BENCH",
            "runner_id": tr.runner_id, "owner_id": tr.owner_id}).to_json())
        for tr in trips])
    await wait_until(lambda: _count(p, "SELECT count(*) AS n FROM trip_tracks", len(trips)),
                     120, what="tracks")
    await asyncio.gather(*[await send("runner.events", tr.runner_id, new_event(
        "service-booking", "runner.assigned", {
            "runner_id": tr.runner_id, "booking_id": tr.booking_id}).to_json())
        for tr in trips])


async def bench(args: argparse.Namespace) -> None:
    p = Platform(Path(tempfile.mkdtemp(prefix="gps-bench-")))
    p.create_database()
    try:
        t = time.monotonic()
        workers = [p.start_worker(f"w{i + 1}") for i in range(args.workers)]
        for w in workers:
            await p.wait_ready(w)
        print(f"{args.workers} worker(s) ready in {time.monotonic() - t:.1f}s")
        trips = [Trip(p) for _ in range(args.bookings)]
        producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", linger_ms=2)
        await producer.start()
        try:
            async def send(topic: str, key: str, value: bytes):
                return await producer.send(p.topic(topic), value, key=key.encode())

            await start_trips(p, trips, send)
            async with aiohttp.ClientSession() as http:
                for i, tr in enumerate(trips):
                    await tr.listen(http, workers[i % len(workers)].url)

                # 1. throughput: everything at once
                total = args.fixes * len(trips)
                sent: dict[tuple[str, str], float] = {}
                t0 = time.time()
                futures = []
                for i in range(args.fixes):
                    for tr in trips:
                        sent[(tr.booking_id, stamp(i))] = time.time()
                        futures.append(await send("runner.events", tr.runner_id, tr.fix(i)))
                await asyncio.gather(*futures)
                t_produced = time.time()
                await wait_until(lambda: _count(p, "SELECT count(*) AS n FROM waypoints", total),
                                 120, 0.05, what="all waypoints in PostGIS")
                t_db = time.time()
                await wait_until(lambda: _all_frames(trips, args.fixes), 60, 0.05,
                                 what="all frames")
                t_ws = time.time()
                burst = [tr.received[ts] - sent[(tr.booking_id, ts)]
                         for tr in trips for ts in list(tr.received)]
                print(f"throughput: {total} fixes ({len(trips)} trips x {args.fixes}) "
                      f"produced in {t_produced - t0:.2f}s; all waypoints in PostGIS after "
                      f"{t_db - t0:.2f}s = {total / (t_db - t0):.0f} events/s; all WS frames "
                      f"after {t_ws - t0:.2f}s = {total / (t_ws - t0):.0f} events/s")
                print(f"  latency under the burst: p50 {percentile(burst, .5) * 1000:.0f} ms, "
                      f"p99 {percentile(burst, .99) * 1000:.0f} ms")

                # 2. latency: paced fixes
                paced: list[tuple[Trip, str, float]] = []
                for k in range(args.paced):
                    tr = trips[k % len(trips)]
                    i = args.fixes + k // len(trips)
                    at = time.time()
                    await (await send("runner.events", tr.runner_id, tr.fix(i)))
                    paced.append((tr, stamp(i), at))
                    await asyncio.sleep(max(0.0, at + 1 / args.rate - time.time()))
                await wait_until(lambda: _paced_done(paced), 60, 0.05, what="paced frames")
                lat = [tr.received[ts] - at for tr, ts, at in paced]
                print(f"latency GPS→WS at {args.rate:.0f} fixes/s ({len(lat)} fixes): "
                      f"p50 {percentile(lat, .5) * 1000:.1f} ms, "
                      f"p99 {percentile(lat, .99) * 1000:.1f} ms, "
                      f"mean {statistics.mean(lat) * 1000:.1f} ms")
                for tr in trips:
                    await tr.ws.close()
        finally:
            await producer.stop()
    finally:
        p.stop_all()
        p.drop_database()


async def _count(p: Platform, query: str, n: int) -> bool:
    return p.sql(query)[0]["n"] >= n


async def _all_frames(trips: list[Trip], n: int) -> bool:
    return all(len(tr.received) >= n for tr in trips)


async def _paced_done(paced) -> bool:
    return all(ts in tr.received for tr, ts, _ in paced)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--bookings", type=int, default=20)
    parser.add_argument("--fixes", type=int, default=100, help="fixes per runner (burst)")
    parser.add_argument("--paced", type=int, default=300, help="fixes in the latency phase")
    parser.add_argument("--rate", type=float, default=50.0, help="paced fixes per second")
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
