"""WebSocket fan-out: 1,000 tracking WebSockets through the gateway, spread over 2 workers,
watching 200 live trips at 1 fix/s each.

Starts a private deployment (fresh database and topics, `--workers` workers, the gateway),
opens `--trips` accepted trips, connects `--viewers` WebSockets per trip to
`/ws/tracking/{booking}` through the gateway (which spreads the upgrades over the workers),
then produces one GPS fix per trip per second to `runner.events` for `--seconds`, each trip's
fixes evenly spread over the second. Every viewer records when each fix's `location_update`
frame arrives; latency = arrival − production of the fix (same clock).

Prints frames expected and delivered, latency p50/p99/max (the goal: every frame, p99 under
250 ms), how the sockets sit on the workers, and the memory of every worker and of the
gateway at rest, with the sockets open, and at the end of the GPS load. The last line is a
JSON object with every figure.

    .venv/bin/python -m bench.ws_fanout_bench
    .venv/bin/python -m bench.ws_fanout_bench --trips 50 --viewers 2 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time

import aiohttp
from aiokafka import AIOKafkaProducer

from bench.gps_bench import Trip, stamp, start_trips
from bench.harness import deployment, idle_cpu_rate, machine, pct, rss_mib
from tests.platform import KAFKA, Platform, wait_until


class Viewer:
    """One tracking WebSocket of a trip: when each fix's frame arrived."""

    def __init__(self, trip: Trip) -> None:
        self.trip = trip
        self.arrived: dict[str, float] = {}

    async def connect(self, http: aiohttp.ClientSession, base: str) -> None:
        url = (base.replace("http", "ws", 1)
               + f"/ws/tracking/{self.trip.booking_id}?token={self.trip.token}")
        self.ws = await http.ws_connect(url, heartbeat=None,
                                        timeout=aiohttp.ClientWSTimeout(ws_close=30))
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                frame = json.loads(msg.data)
                if frame.get("type") == "location_update":
                    self.arrived.setdefault(frame["data"]["timestamp"], time.time())


async def sockets_per_worker(p: Platform, http: aiohttp.ClientSession) -> list[int]:
    """Open tracking WebSockets on each worker, from its /metrics."""
    counts = []
    for w in p.workers:
        async with http.get(w.url + "/metrics") as resp:
            text = await resp.text()
        counts.append(int(sum(float(line.split()[-1]) for line in text.splitlines()
                              if line.startswith("kilat_websocket_connections"))))
    return counts


def memory(p: Platform) -> dict[str, object]:
    return {"workers_mib": [rss_mib(w.popen.pid) for w in p.workers],
            "gateway_mib": rss_mib(p.gateway.popen.pid)}


async def bench(args: argparse.Namespace) -> None:
    # Each socket is a descriptor here, two in the gateway and one in a worker (children
    # inherit the limit).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    async with deployment(args.workers, "kilat-wsbench-") as p:
        mem_rest = memory(p)
        idle = await idle_cpu_rate([w.popen.pid for w in p.workers])
        trips = [Trip(p) for _ in range(args.trips)]
        producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks=1, linger_ms=2)
        await producer.start()
        connector = aiohttp.TCPConnector(limit=0)
        try:
            async def send(topic: str, key: str, value: bytes):
                return await producer.send(p.topic(topic), value, key=key.encode())

            await start_trips(p, trips, send)
            async with aiohttp.ClientSession(connector=connector) as http:
                viewers = [Viewer(tr) for tr in trips for _ in range(args.viewers)]
                t = time.monotonic()
                for i in range(0, len(viewers), 50):
                    await asyncio.gather(*(v.connect(http, p.base_url)
                                           for v in viewers[i:i + 50]))
                per_worker = await sockets_per_worker(p, http)
                print(f"{len(viewers)} WebSockets ({args.viewers} per trip, {args.trips} trips) "
                      f"open through the gateway in {time.monotonic() - t:.1f}s; per worker "
                      f"{per_worker}")
                mem_open = memory(p)

                sent: dict[tuple[str, str], float] = {}
                futures = []
                t0 = time.time()
                for second in range(args.seconds):
                    for k, tr in enumerate(trips):
                        slot = t0 + second + k / len(trips)
                        await asyncio.sleep(max(0.0, slot - time.time()))
                        sent[(tr.booking_id, stamp(second))] = time.time()
                        futures.append(await send("runner.events", tr.runner_id,
                                                  tr.fix(second)))
                await asyncio.gather(*futures)
                produced = time.time() - t0
                mem_load = memory(p)
                expected = len(viewers) * args.seconds

                async def delivered() -> bool:
                    return sum(len(v.arrived) for v in viewers) >= expected
                try:
                    await wait_until(delivered, args.drain, 0.1, "every frame")
                except AssertionError:
                    pass
                got = sum(len(v.arrived) for v in viewers)
                latencies = [at - sent[(v.trip.booking_id, ts)]
                             for v in viewers for ts, at in v.arrived.items()]
                for v in viewers:
                    await v.ws.close()
        finally:
            await producer.stop()
            await connector.close()
        rate = args.trips * args.seconds / produced
        row = {"frames_expected": expected, "frames_delivered": got,
               "every_frame": got == expected,
               "p50_ms": round(pct(latencies, 50), 1), "p99_ms": round(pct(latencies, 99), 1),
               "max_ms": round(max(latencies) * 1000, 1)}
        print(f"{args.trips * args.seconds} fixes over {produced:.1f}s ({rate:.0f} fixes/s); "
              f"frames delivered {got}/{expected}; latency fix→frame p50 {row['p50_ms']} ms, "
              f"p99 {row['p99_ms']} ms, max {row['max_ms']} ms")
        print(f"memory MiB: at rest {mem_rest}; with the sockets open {mem_open}; "
              f"at the end of the GPS load {mem_load}")
        per_socket = [round((o - r) * 1024 / max(1, n), 1) for o, r, n in zip(
            mem_open["workers_mib"], mem_rest["workers_mib"], per_worker, strict=True)]
        print(f"worker memory per open socket: {per_socket} KiB; workers' CPU at rest "
              f"{idle * 100:.0f} % of a core")
        goal = row["every_frame"] and row["p99_ms"] < 250
        print(f"goal (every frame, p99 < 250 ms): {'met' if goal else 'NOT met'}")
        print(json.dumps({
            "bench": "ws_fanout", **machine(), "workers": args.workers, "trips": args.trips,
            "viewers_per_trip": args.viewers, "sockets": len(viewers),
            "sockets_per_worker": per_worker, "seconds": args.seconds,
            "fixes_per_second": round(rate, 1), **row,
            "memory_mib": {"rest": mem_rest, "sockets_open": mem_open, "gps_load": mem_load},
            "worker_kib_per_socket": per_socket, "workers_idle_cpu_percent": round(idle * 100, 1),
            "goal_met": goal}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--trips", type=int, default=200)
    parser.add_argument("--viewers", type=int, default=5, help="WebSockets per trip")
    parser.add_argument("--seconds", type=int, default=30, help="seconds of GPS fixes")
    parser.add_argument("--drain", type=float, default=30.0,
                        help="seconds to wait for the last frames")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(bench(args))
    else:
        uvloop.run(bench(args))


if __name__ == "__main__":
    main()
