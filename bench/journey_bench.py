"""The booking journey under load: create → accept → pay through the gateway, 50 concurrent
clients.

Starts a private deployment (fresh database and topics, `--workers` workers, the gateway;
payments use the Stripe adapter's offline mode), signs up `--clients` owners and as many
runners through the API, then each client pair runs `--journeys` journeys one after the
other, all pairs at once: the owner books (`POST /api/v1/bookings`), the runner accepts
(`POST /api/v1/bookings/{id}/accept`), the owner pays (`POST /api/v1/payments/initiate`). The
anchor, measured in the same run with the same clients, is a read of one booking
(`GET /api/v1/bookings/{id}`).

Prints p50/p99 per step and for the whole journey, the ratios to the anchor, journeys per
second and the workers' memory; the last line is a JSON object with every figure.

    .venv/bin/python -m bench.journey_bench
    .venv/bin/python -m bench.journey_bench --clients 20 --journeys 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from typing import Any

import aiohttp

from bench.harness import deployment, machine, pct, rss_mib

PICKUP = {"line1": "1 Jalan Ampang", "line2": "", "city": "Kuala Lumpur", "state": "WP",
          "postal_code": "50450", "country": "MY", "latitude": 3.139, "longitude": 101.6869}
DROPOFF = {**PICKUP, "line1": "2 Jalan Telawi", "latitude": 3.15, "longitude": 101.71}
BOOKING = {"pet_spec": {"pet_type": "cat", "name": "Milo", "weight_kg": 4, "breed": "Persian",
                        "age_months": 24},
           "pickup_address": PICKUP, "dropoff_address": DROPOFF, "notes": "ring the bell"}
STEPS = ("create", "accept", "pay")


class Failed(RuntimeError):
    pass


async def call(http: aiohttp.ClientSession, method: str, url: str, token: str,
               expect: int, body: Any = None) -> dict[str, Any]:
    async with http.request(method, url, json=body,
                            headers={"Authorization": f"Bearer {token}"}) as resp:
        data = await resp.json(content_type=None)
        if resp.status != expect:
            raise Failed(f"{method} {url}: {resp.status} {data}")
        return data


async def sign_up(http: aiohttp.ClientSession, base: str, role: str) -> str:
    body = {"email": f"{role}-{uuid.uuid4().hex[:12]}@kilat.test", "password": "Secret123!",
            "full_name": f"Bench {role.title()}", "phone": "+60123456789", "role": role}
    async with http.post(base + "/api/v1/auth/register", json=body) as resp:
        data = await resp.json()
        if resp.status != 201:
            raise Failed(f"sign-up: {resp.status} {data}")
        return data["data"]["access_token"]


async def journey(http: aiohttp.ClientSession, base: str, owner: str, runner: str,
                  took: dict[str, list[float]]) -> str:
    t0 = time.perf_counter()
    booking = (await call(http, "POST", base + "/api/v1/bookings", owner, 201, BOOKING))["data"]
    t1 = time.perf_counter()
    await call(http, "POST", f"{base}/api/v1/bookings/{booking['id']}/accept", runner, 200)
    t2 = time.perf_counter()
    await call(http, "POST", base + "/api/v1/payments/initiate", owner, 201,
               {"booking_id": booking["id"]})
    t3 = time.perf_counter()
    for step, seconds in zip((*STEPS, "journey"), (t1 - t0, t2 - t1, t3 - t2, t3 - t0),
                             strict=True):
        took[step].append(seconds)
    return booking["id"]


async def bench(args: argparse.Namespace) -> None:
    async with deployment(args.workers, "kilat-journey-") as p:
        base = p.base_url
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            sem = asyncio.Semaphore(8)  # sign-ups hash passwords: not part of the figures

            async def user(role: str) -> str:
                async with sem:
                    return await sign_up(http, base, role)
            owners = await asyncio.gather(*(user("owner") for _ in range(args.clients)))
            runners = await asyncio.gather(*(user("runner") for _ in range(args.clients)))
            print(f"{args.clients} owners and {args.clients} runners signed up; "
                  f"{args.workers} worker(s) + gateway")
            mem_rest = [rss_mib(w.popen.pid) for w in p.workers]
            warm: dict[str, list[float]] = {s: [] for s in (*STEPS, "journey")}
            await asyncio.gather(*(journey(http, base, o, r, warm)
                                   for o, r in zip(owners, runners, strict=True)))

            took: dict[str, list[float]] = {s: [] for s in (*STEPS, "journey")}
            booked: list[tuple[str, str]] = []  # (owner token, booking id)

            async def pair(owner: str, runner: str) -> None:
                for _ in range(args.journeys):
                    booked.append((owner, await journey(http, base, owner, runner, took)))
            t = time.perf_counter()
            await asyncio.gather(*(pair(o, r) for o, r in zip(owners, runners, strict=True)))
            elapsed = time.perf_counter() - t
            mem_load = [rss_mib(w.popen.pid) for w in p.workers]

            reads: list[float] = []

            async def read(owner: str, booking_id: str) -> None:
                for _ in range(args.journeys):
                    t0 = time.perf_counter()
                    await call(http, "GET", f"{base}/api/v1/bookings/{booking_id}", owner, 200)
                    reads.append(time.perf_counter() - t0)
            await asyncio.gather(*(read(o, b) for o, b in booked[:args.clients]))
        await connector.close()
    anchor = {"p50_ms": round(pct(reads, 50), 1), "p99_ms": round(pct(reads, 99), 1)}
    rows = {step: {"p50_ms": round(pct(v, 50), 1), "p99_ms": round(pct(v, 99), 1),
                   "p50_vs_anchor": round(pct(v, 50) / anchor["p50_ms"], 2)}
            for step, v in took.items()}
    n = len(took["journey"])
    print(f"{n} journeys by {args.clients} concurrent clients in {elapsed:.1f}s "
          f"({n / elapsed:.1f} journeys/s, {3 * n / elapsed:.0f} writes/s)")
    print(f"  anchor GET booking   p50 {anchor['p50_ms']:7.1f} ms  p99 {anchor['p99_ms']:7.1f} ms")
    for step, r in rows.items():
        print(f"  {step:20s} p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  "
              f"p50 x{r['p50_vs_anchor']:.1f} of the anchor")
    print(f"worker memory: at rest {mem_rest} MiB, after the journeys {mem_load} MiB")
    print(json.dumps({
        "bench": "journey", **machine(), "workers": args.workers, "clients": args.clients,
        "journeys": n, "seconds": round(elapsed, 2), "journeys_per_s": round(n / elapsed, 2),
        "anchor_get_booking": anchor, "steps": rows,
        "worker_rss_mib": {"rest": mem_rest, "after": mem_load}}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--journeys", type=int, default=10, help="journeys per client")
    args = parser.parse_args()
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
