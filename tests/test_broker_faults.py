"""A broker fails under load: the three-broker cluster, 20 trips streaming GPS through the
gateway and a paid delivery being completed, while the broker that leads the most partitions
is killed (-9) and restarted, and then the cluster's controller is killed.

Asserted: every fix the API acknowledged is stored exactly once and nothing is stored twice;
the paid booking completes, its escrow is released once and each notification is sent once;
the worker never stops. Printed: how long the live feed (the trip WebSockets) stalled.

Run with `make test-faults` (it starts the cluster and points KAFKA_BROKERS at it); the main
suite deselects these tests.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiokafka import AIOKafkaClient

from tests.conftest import Client
from tests.platform import KAFKA, ROOT, Platform, wait_until

pytestmark = pytest.mark.broker_faults

INFRA = str(ROOT / "scripts" / "infra.sh")
CLUSTER_ENV = {**os.environ, "KAFKA_CLUSTER": "3"}
TRIPS = 20
FIX_EVERY_S = 0.5
VEHICLE = {"vehicle_type": "car", "vehicle_plate": "WXY 1234", "vehicle_model": "Perodua Myvi",
           "vehicle_year": 2021, "air_conditioned": True}


def infra(*args: str) -> str:
    return subprocess.run([INFRA, *args], env=CLUSTER_ENV, check=True, capture_output=True,
                          text=True, timeout=300).stdout.strip()


@pytest.fixture(scope="module")
def cluster() -> str:
    infra("up")
    brokers = infra("cluster-brokers")
    assert KAFKA == brokers, f"run with KAFKA_BROKERS={brokers} (make test-faults does)"
    return brokers


# ---------------------------------------------------------------- the cluster

async def partition_leaders() -> tuple[Counter[int], bool]:
    """(partitions led per broker id, whether every partition has all its replicas in sync),
    over every topic of the cluster."""
    client = AIOKafkaClient(bootstrap_servers=KAFKA, request_timeout_ms=5000)
    await client.bootstrap()
    try:
        metadata = await client.fetch_all_metadata()
        leaders: Counter[int] = Counter()
        in_sync = True
        for partitions in metadata._partitions.values():  # noqa: SLF001 - replicas and ISR
            for meta in partitions.values():
                leaders[meta.leader] += 1
                in_sync &= len(meta.isr) == len(meta.replicas)
        return leaders, in_sync
    finally:
        await client.close()


def node_port(node: int) -> int:
    return int(KAFKA.split(",")[node - 1].rsplit(":", 1)[1])


def port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


async def kill_node(node: int) -> None:
    os.kill(int(infra("cluster-pid", str(node))), 9)
    await wait_until(lambda: asyncio.to_thread(lambda: not port_open(node_port(node))), 10,
                     what=f"broker {node} gone")


async def restart_missing_nodes() -> None:
    await asyncio.to_thread(infra, "kafka-up")

    async def healed() -> bool:
        _, in_sync = await partition_leaders()
        return in_sync
    await wait_until(healed, 120, 1.0, "every partition back in sync on three brokers")


# ---------------------------------------------------------------- load

@dataclass
class Trip:
    owner: Client
    runner: Client
    booking_id: str
    acked: list[tuple[float, float]] = field(default_factory=list)
    refused: list[tuple[float, float]] = field(default_factory=list)
    frames: list[float] = field(default_factory=list)  # arrival times of location frames
    sent_at: dict[tuple[float, float], float] = field(default_factory=dict)


def _address(lat: float, lng: float) -> dict:
    return {"line1": "1 Jalan Ampang", "line2": "", "city": "Kuala Lumpur", "state": "WP",
            "postal_code": "50450", "country": "MY", "latitude": lat, "longitude": lng}


async def _signed_up(http: aiohttp.ClientSession, p: Platform, role: str) -> Client:
    c = Client(http, p.base_url)
    status, body = await c.post("/api/v1/auth/register", {
        "email": f"{role}-{uuid.uuid4().hex[:10]}@kilat.test", "password": "Secret123!",
        "full_name": f"Test {role.title()}", "phone": "+60123456789", "role": role})
    assert status == 201, body
    c.token, c.user = body["data"]["access_token"], body["data"]["user"]
    return c


async def picked_up_trip(http: aiohttp.ClientSession, p: Platform, n: int) -> Trip:
    """A paid booking whose runner has picked the pet up (so its fixes become waypoints)."""
    lat, lng = 3.05 + n * 0.01, 101.60 + n * 0.01
    owner, runner = await _signed_up(http, p, "owner"), await _signed_up(http, p, "runner")
    assert (await runner.post("/api/v1/runners", VEHICLE))[0] == 201
    assert (await runner.post("/api/v1/runners/me/online",
                              {"latitude": lat, "longitude": lng}))[0] == 200
    status, body = await owner.post("/api/v1/bookings", {
        "pet_spec": {"pet_type": "cat", "name": f"Milo {n}", "weight_kg": 4},
        "pickup_address": _address(lat, lng), "dropoff_address": _address(lat - 0.02, lng)})
    assert status == 201, body
    booking_id = body["data"]["id"]
    assert (await owner.post("/api/v1/payments/initiate", {"booking_id": booking_id}))[0] == 201
    assert (await runner.post(f"/api/v1/bookings/{booking_id}/accept"))[0] == 200
    await wait_until(lambda: asyncio.to_thread(
        p.sql, "SELECT 1 FROM trip_tracks WHERE booking_id = %s", (booking_id,)), 60,
        what="track created")
    assert (await runner.post(f"/api/v1/bookings/{booking_id}/pickup"))[0] == 200
    return Trip(owner, runner, booking_id)


async def stream_fixes(trip: Trip, n: int, stop: asyncio.Event) -> None:
    """One fix every FIX_EVERY_S, each at its own coordinates. A refused fix (503 while the
    broker cannot take it) is not retried: the device sends its next position instead."""
    k = 0
    while not stop.is_set():
        started = time.monotonic()
        point = (round(3.05 + n * 0.01 - k * 0.00002, 6), round(101.60 + n * 0.01, 6))
        k += 1
        trip.sent_at[point] = started
        try:
            status, _ = await trip.runner.post("/api/v1/runners/me/location", {
                "latitude": point[0], "longitude": point[1], "speed_kmh": 25,
                "heading_degrees": 180})
        except aiohttp.ClientError:
            status = 0
        (trip.acked if status == 200 else trip.refused).append(point)
        await asyncio.sleep(max(FIX_EVERY_S - (time.monotonic() - started), 0.0))


async def watch(http: aiohttp.ClientSession, p: Platform, trip: Trip) -> None:
    """The owner's live map: records when each location frame arrives."""
    url = p.base_url.replace("http", "ws", 1) + \
        f"/ws/tracking/{trip.booking_id}?token={trip.owner.token}"
    async with http.ws_connect(url, heartbeat=None) as ws:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT and '"location_update"' in msg.data:
                trip.frames.append(time.monotonic())


def longest_gap(times: list[float], start: float, end: float) -> float:
    inside = [t for t in times if start <= t <= end]
    edges = [start, *inside, end]
    return max(b - a for a, b in zip(edges, edges[1:], strict=False))


def stored_points(p: Platform, booking_id: str) -> list[tuple[float, float]]:
    rows = p.sql("SELECT w.latitude, w.longitude FROM waypoints w JOIN trip_tracks t "
                 "ON t.id = w.trip_track_id WHERE t.booking_id = %s", (booking_id,))
    return [(round(r["latitude"], 6), round(r["longitude"], 6)) for r in rows]


# ---------------------------------------------------------------- the test

async def test_broker_and_controller_failures_lose_and_repeat_nothing(
        cluster: str, fresh_platform: Platform, http: aiohttp.ClientSession) -> None:
    p = fresh_platform
    await restart_missing_nodes()  # a previous run may have left a node down
    worker = await p.start_worker_and_gateway()
    trips = [await picked_up_trip(http, p, n) for n in range(TRIPS)]
    paid = trips[0]

    stop = asyncio.Event()
    streams = [asyncio.create_task(stream_fixes(t, n, stop)) for n, t in enumerate(trips)]
    watchers = [asyncio.create_task(watch(http, p, t)) for t in trips]

    async def moving() -> bool:
        return all(len(t.frames) >= 3 for t in trips)
    await wait_until(moving, 60, what="every live map moving")

    # 1. The broker leading the most partitions dies mid-stream and comes back.
    leaders, _ = await partition_leaders()
    busiest = leaders.most_common(1)[0][0]
    t_kill = time.monotonic()
    await kill_node(busiest)
    # The paid delivery ends while that broker is down: delivered, confirmed, escrow released.
    path = f"/api/v1/bookings/{paid.booking_id}"
    await asyncio.sleep(3)
    assert (await paid.runner.post(f"{path}/deliver"))[0] == 200
    status, body = await paid.owner.post(f"{path}/confirm")
    assert status == 200, body
    await asyncio.sleep(10)
    await restart_missing_nodes()
    t_back = time.monotonic()

    # 2. Then the controller (the metadata quorum's leader) dies.
    controller = int(infra("cluster-controller"))
    t_ctl = time.monotonic()
    await kill_node(controller)
    await asyncio.sleep(20)
    t_end = time.monotonic()

    stop.set()
    await asyncio.gather(*streams)
    await restart_missing_nodes()

    # Every acknowledged fix stored once; nothing stored twice or that was never sent.
    def missing() -> dict[int, list[float]]:
        """Per trip, when (seconds from the first kill) each acknowledged, unstored fix went."""
        lost = {}
        for n, trip in enumerate(trips):
            absent = set(trip.acked) - set(stored_points(p, trip.booking_id))
            if absent:
                lost[n] = sorted(round(trip.sent_at[pt] - t_kill, 1) for pt in absent)
        return lost

    async def settled() -> bool:
        return not await asyncio.to_thread(missing)
    try:
        await wait_until(settled, 120, 2.0, "every acknowledged fix stored")
    except AssertionError:
        raise AssertionError(f"acknowledged fixes lost (trip: seconds after the first kill, "
                             f"controller killed at {t_ctl - t_kill:.0f} s): {missing()}"
                             ) from None
    for trip in trips:
        stored = stored_points(p, trip.booking_id)
        assert [pt for pt, n in Counter(stored).items() if n > 1] == [], "duplicated waypoints"
        assert set(stored) <= set(trip.acked) | set(trip.refused), "waypoints never sent"

    # The paid delivery: completed once, escrow released once, one notification per event.
    async def released() -> bool:
        status, body = await paid.owner.get(f"/api/v1/payments/booking/{paid.booking_id}")
        return status == 200 and body["data"]["escrow_status"] == "released"
    await wait_until(released, 120, what="the escrow released")

    async def completion_notified() -> bool:
        return bool(await asyncio.to_thread(
            p.sql, "SELECT 1 FROM notifications WHERE booking_id = %s "
            "AND event_type = 'booking.completed'", (paid.booking_id,)))
    await wait_until(completion_notified, 120, what="completion notifications")
    for type_ in ("booking.delivery_confirmed", "payment.escrow_released", "booking.completed"):
        assert len(p.sql("SELECT 1 FROM outbox WHERE key = %s AND value->>'type' = %s",
                         (paid.booking_id, type_))) == 1, type_
    assert len(await p.events_of("payment.events", "payment.escrow_released",
                                 booking_id=paid.booking_id)) == 1
    assert p.sql("SELECT user_id, event_type, count(*) AS n FROM notifications "
                 "WHERE booking_id = %s GROUP BY 1, 2 HAVING count(*) > 1",
                 (paid.booking_id,)) == []

    # No worker crash: the one worker ran throughout.
    assert worker.alive(), worker.log_tail()
    for task in watchers:
        task.cancel()
    await asyncio.gather(*watchers, return_exceptions=True)

    acked = sum(len(t.acked) for t in trips)
    refused = sum(len(t.refused) for t in trips)
    first = max(longest_gap(t.frames, t_kill, t_back) for t in trips)
    second = max(longest_gap(t.frames, t_ctl, t_end) for t in trips)
    print(f"\nbroker faults: busiest broker {busiest} ({leaders[busiest]} of "
          f"{sum(leaders.values())} partitions) killed and restarted, then controller "
          f"{controller} killed; fixes acknowledged {acked}, refused {refused}; "
          f"live feed stalled at most {first:.1f} s (broker kill), {second:.1f} s "
          f"(controller kill); normal interval {FIX_EVERY_S} s")
