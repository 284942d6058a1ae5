"""Fault tests: a worker killed mid-stream, PostgreSQL outage, Kafka restart, unsafe config.

These stop shared infrastructure (the PostgreSQL server, the broker) and bring it back with the
project's own script, so they run last in the suite (see pytest_collection_modifyitems).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid

import aiohttp
import pytest

from models.events import new_event
from tests.conftest import Client
from tests.platform import ROOT, VENV_BIN, Platform, Proc, wait_until

INFRA = str(ROOT / "scripts" / "infra.sh")
pytestmark = pytest.mark.infra_faults


def fixes(runner: str, n: int, start: float = 1_795_600_000.0) -> list[tuple[str, bytes]]:
    """`n` fixes one second apart moving north from central KL."""
    return [
        (runner, new_event("device", "runner.location_update", {
            "runner_id": runner, "latitude": 3.10 + i * 0.0001, "longitude": 101.69,
            "speed_kmh": 30.0, "heading_degrees": 0.0, "timestamp": start + i,
        }, event_id=f"fix-{runner}-{i}").to_json())
        for i in range(n)
    ]


def stored_lat(p: Platform, runner: str) -> float | None:
    rows = p.sql("SELECT ST_Y(location::geometry) AS lat FROM runner_locations "
                 "WHERE runner_id = %s", (runner,))
    return rows[0]["lat"] if rows else None


async def stream_started(p: Platform, n: int, first: int) -> tuple[Proc, str, list]:
    """One ready worker and a runner whose first `first` of `n` fixes are in PostGIS."""
    worker = p.start_worker("w1")
    await p.wait_ready(worker)
    runner = str(uuid.uuid4())
    trace = fixes(runner, n)
    await p.produce_many("runner.events", trace[:first])
    await wait_until(lambda: _async(stored_lat(p, runner)), 30, what="first fixes stored")
    return worker, runner, trace


async def converged_to(p: Platform, runner: str, index: int, timeout: float, what: str) -> None:
    """Wait until PostGIS holds fix number `index` of the runner's trace."""
    last = 3.10 + index * 0.0001

    async def done() -> bool:
        lat = stored_lat(p, runner)
        return lat is not None and abs(lat - last) < 1e-9
    await wait_until(done, timeout, what=what)


async def test_production_refuses_to_start_without_a_jwt_secret(fresh_platform: Platform):
    env = fresh_platform.env(KILAT_ENV="production")
    env.pop("JWT_SECRET")
    proc = await asyncio.create_subprocess_exec(
        str(VENV_BIN / "faust"), "-A", "kilat", "worker", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode != 0
    assert b"JWT_SECRET must be set when KILAT_ENV=production" in out


async def test_kill_9_mid_stream_loses_nothing(fresh_platform: Platform):
    p = fresh_platform
    w1 = p.start_worker("w1")
    await p.wait_ready(w1)
    runner = str(uuid.uuid4())
    trace = fixes(runner, 400)
    await p.produce_many("runner.events", trace[:200])

    async def some_progress() -> bool:
        lat = stored_lat(p, runner)
        return lat is not None and lat > 3.10
    await wait_until(some_progress, 60, what="first fixes stored")
    p.stop(w1, kill=True)  # no shutdown, no final commit, no flush
    await p.produce_many("runner.events", trace[200:])

    w2 = p.start_worker("w2")  # empty data dir: state comes back from the changelog
    await p.wait_ready(w2)
    await converged_to(p, runner, 399, 90, "PostGIS converged to the last fix")
    last = 3.10 + 399 * 0.0001
    entry = await _table_entry(p, "runner-positions", runner)
    assert abs(entry["latitude"] - last) < 1e-9


async def _table_entry(p: Platform, table: str, key: str) -> dict:
    import json

    return json.loads(await p.kilat("table-entry", "--table", table, "--key", key))


async def test_postgres_outage_answers_503_then_catches_up(fresh_platform: Platform):
    p = fresh_platform
    w1, runner, trace = await stream_started(p, 60, 10)

    subprocess.run([INFRA, "pg-down"], check=True)
    outage_started = time.monotonic()
    try:
        await p.produce_many("runner.events", trace[10:])  # arrives during the outage
        async with aiohttp.ClientSession() as http:
            async def readiness_reports_outage() -> bool:
                async with http.get(w1.url + "/readiness") as r:
                    body = await r.json()
                    return r.status == 503 and body["checks"]["database"].startswith("error")
            await wait_until(readiness_reports_outage, 20, what="readiness 503")
            t0 = time.monotonic()
            async with http.post(w1.url + "/api/v1/auth/login",
                                 json={"email": "a@b.c", "password": "whatever1"}) as r:
                assert r.status == 503
                body = await r.json()
                assert body["success"] is False
            assert time.monotonic() - t0 < 15  # answers, does not hang
        remaining = 30 - (time.monotonic() - outage_started)
        if remaining > 0:
            await asyncio.sleep(remaining)  # the outage itself lasts 30 s by design
    finally:
        subprocess.run([INFRA, "pg-up"], check=True)
    await converged_to(p, runner, 59, 90, "sink caught up after the outage")
    async with aiohttp.ClientSession() as http, http.get(w1.url + "/readiness") as r:
        assert r.status == 200


async def test_broker_restart_loses_nothing(fresh_platform: Platform):
    p = fresh_platform
    w1, runner, trace = await stream_started(p, 40, 20)
    subprocess.run([INFRA, "kafka-down"], check=True)
    subprocess.run([INFRA, "kafka-up"], check=True)
    await p.produce_many("runner.events", trace[20:])
    await converged_to(p, runner, 39, 120, "fixes after the broker restart stored")
    assert w1.alive()


async def _async(value):
    return value


# ---------------------------------------------------------------- kill -9 mid booking journey

VEHICLE = {"vehicle_type": "car", "vehicle_plate": "WXY 1234", "vehicle_model": "Perodua Myvi",
           "vehicle_year": 2021, "air_conditioned": True}
PICKUP, DROPOFF = (3.1579, 101.7117), (3.1390, 101.6869)


def _address(point: tuple[float, float]) -> dict:
    return {"line1": "1 Jalan Ampang", "line2": "", "city": "Kuala Lumpur", "state": "WP",
            "postal_code": "50450", "country": "MY", "latitude": point[0],
            "longitude": point[1]}


async def _signed_up(http: aiohttp.ClientSession, p: Platform, role: str) -> Client:
    c = Client(http, p.base_url)
    status, body = await c.post("/api/v1/auth/register", {
        "email": f"{role}-{uuid.uuid4().hex[:10]}@kilat.test", "password": "Secret123!",
        "full_name": f"Test {role.title()}", "phone": "+60123456789", "role": role})
    assert status == 201, body
    c.token, c.user = body["data"]["access_token"], body["data"]["user"]
    return c


async def test_kill_9_mid_booking_journey_completes_once(fresh_platform: Platform, http):
    """A paid, tracked delivery whose only worker is killed (-9) right after the runner marks
    it delivered, with the owner's confirmation window, the escrow release, completion and
    notifications still to run: a new worker on an empty data directory rebuilds the
    `delivered-bookings` table from its changelog, confirms for the owner once the window
    (10.8 s here) has passed, and every effect happens once."""
    p = fresh_platform
    p.extra_env["AUTO_CONFIRM_HOURS"] = "0.003"
    w1 = await p.start_worker_and_gateway()
    owner, runner = await _signed_up(http, p, "owner"), await _signed_up(http, p, "runner")
    assert (await runner.post("/api/v1/runners", VEHICLE))[0] == 201
    assert (await runner.post("/api/v1/runners/me/online",
                              {"latitude": PICKUP[0], "longitude": PICKUP[1]}))[0] == 200
    status, body = await owner.post("/api/v1/bookings", {
        "pet_spec": {"pet_type": "cat", "name": "Milo", "weight_kg": 4},
        "pickup_address": _address(PICKUP), "dropoff_address": _address(DROPOFF)})
    assert status == 201, body
    booking_id = body["data"]["id"]
    path = f"/api/v1/bookings/{booking_id}"
    assert (await owner.post("/api/v1/payments/initiate", {"booking_id": booking_id}))[0] == 201
    assert (await runner.post(f"{path}/accept"))[0] == 200
    await wait_until(lambda: _async(_rows(p, "SELECT 1 FROM trip_tracks WHERE booking_id = %s",
                                          booking_id)), 60, what="track created")
    assert (await runner.post(f"{path}/pickup"))[0] == 200
    points = [(PICKUP[0] - i * 0.001, PICKUP[1] - i * 0.0012) for i in range(12)]
    for lat, lng in points:
        status, body = await runner.post("/api/v1/runners/me/location", {
            "latitude": lat, "longitude": lng, "speed_kmh": 30, "heading_degrees": 200})
        assert status == 200, body
    await wait_until(lambda: _async(_waypoints(p, booking_id) == len(points)), 60,
                     what="the trip's waypoints")
    assert (await runner.post(f"{path}/deliver"))[0] == 200
    p.stop(w1, kill=True)  # no shutdown: outbox, saga and notifications are cut short

    w2 = p.start_worker("w2", port=w1.port)  # empty data dir, same address for the gateway
    await p.wait_ready(w2)

    async def completed() -> dict | None:
        status, body = await owner.get(path)
        return body["data"] if status == 200 and body["data"]["status"] == "completed" else None
    await wait_until(completed, 120, what="the booking completed by the new worker")

    async def released() -> bool:
        status, body = await owner.get(f"/api/v1/payments/booking/{booking_id}")
        return status == 200 and body["data"]["escrow_status"] == "released"
    await wait_until(released, 60, what="the escrow released after the platform's confirm")
    [done] = await p.wait_event("booking.events", "booking.completed", booking_id=booking_id)
    assert (done["data"]["confirmed_by"], done["data"]["auto_confirmed"]) == ("platform", True)

    # Every effect once: one release and one completion in the outbox, one trip counted for
    # the runner, one notification per (recipient, event), every waypoint once.
    async def settled() -> bool:
        return bool(_rows(p, "SELECT 1 FROM notifications WHERE booking_id = %s "
                             "AND event_type = 'booking.completed'", booking_id))
    await wait_until(settled, 60, what="completion notifications")
    for type_ in ("booking.delivery_confirmed", "payment.escrow_released", "booking.completed"):
        assert len(_rows(p, "SELECT 1 FROM outbox WHERE key = %s AND value->>'type' = %s",
                         booking_id, type_)) == 1, type_
    assert _rows(p, "SELECT total_trips FROM runners WHERE user_id = %s",
                 runner.user["id"]) == [{"total_trips": 1}]
    assert _rows(p, "SELECT user_id, event_type, count(*) AS n FROM notifications "
                    "WHERE booking_id = %s GROUP BY 1, 2 HAVING count(*) > 1", booking_id) == []
    assert _waypoints(p, booking_id) == len(points)


def _rows(p: Platform, sql: str, *params) -> list[dict]:
    return p.sql(sql, params)


def _waypoints(p: Platform, booking_id: str) -> int:
    return _rows(p, "SELECT count(*) AS n FROM waypoints w JOIN trip_tracks t "
                    "ON t.id = w.trip_track_id WHERE t.booking_id = %s", booking_id)[0]["n"]
