"""Live trip tracking: trip state, waypoints in PostGIS, the tracking WebSocket across two
workers, REST reads, trip sharing and chat.

The trip is driven with the events the booking and runner domains emit (`booking.accepted`,
`runner.assigned`, `runner.location_update`, `booking.delivery_confirmed`), produced to the
real broker; the booking row the participant checks read is inserted directly.
"""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.security import issue_access_token
from models.events import new_event
from tests.platform import Platform, wait_until

TRACE = [json.loads(line) for line in
         (Path(__file__).parent / "fixtures" / "gps_trace_5km.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- helpers

def path_length_km(points) -> float:
    """Expected distance, computed here independently: haversine legs, R = 6371 km."""
    pts = list(points)
    total = 0.0
    for (lat1, lng1), (lat2, lng2) in zip(pts, pts[1:], strict=False):
        p1, p2 = math.radians(lat1), math.radians(lat2)
        a = (math.sin((p2 - p1) / 2) ** 2
             + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lng2 - lng1) / 2) ** 2)
        total += 2 * 6371.0 * math.asin(math.sqrt(a))
    return total


@dataclass
class User:
    id: str
    role: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def user(role: str) -> User:
    uid = str(uuid.uuid4())
    return User(uid, role, issue_access_token(uid, f"{role}-{uid[:8]}@kilat.test", role))


def insert_booking(p: Platform, owner: User, runner: User | None, status: str = "accepted") -> str:
    booking_id = str(uuid.uuid4())
    addr = json.dumps({"address": "KLCC", "latitude": 3.1579, "longitude": 101.7117})
    p.sql(
        "INSERT INTO bookings (id, booking_number, owner_id, runner_id, status, pet_spec, "
        "crate_requirement, pickup_address, dropoff_address, pickup_location, "
        "estimated_price_cents) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, "
        "ST_SetSRID(ST_MakePoint(101.7117, 3.1579), 4326)::geography, 1500)",
        (booking_id, "BK-" + uuid.uuid4().hex[:6].upper(), owner.id,
         runner.id if runner else None, status,
         json.dumps({"pet_type": "cat", "name": "Milo", "weight_kg": 4}),
         json.dumps({"size": "small", "required": True}), addr, addr))
    return booking_id


async def accept(p: Platform, booking_id: str, owner: User, runner: User) -> dict:
    """What the booking domain emits on accept: booking.accepted + runner.assigned."""
    await p.produce("booking.events", booking_id, new_event("service-booking", "booking.accepted", {
        "booking_id": booking_id, "booking_number": "BK-TEST01", "runner_id": runner.id,
        "owner_id": owner.id}).to_json())
    track = await wait_until(lambda: _track(p, booking_id), 60, what="trip track created")
    await p.produce("runner.events", runner.id, new_event("service-booking", "runner.assigned", {
        "runner_id": runner.id, "booking_id": booking_id}).to_json())
    return track


async def _track(p: Platform, booking_id: str) -> dict | None:
    rows = p.sql("SELECT * FROM trip_tracks WHERE booking_id = %s", (booking_id,))
    return rows[0] if rows else None


def fix(runner: User, point: dict) -> bytes:
    return new_event("device", "runner.location_update", {
        "runner_id": runner.id, **point}).to_json()


def waypoint_count(p: Platform, booking_id: str) -> int:
    return p.sql("SELECT count(*) AS n FROM waypoints w JOIN trip_tracks t "
                 "ON t.id = w.trip_track_id WHERE t.booking_id = %s", (booking_id,))[0]["n"]


def ws_url(base: str, booking_id: str, token: str) -> str:
    return base.replace("http", "ws", 1) + f"/ws/tracking/{booking_id}?token={token}"


@dataclass
class Listener:
    """A WebSocket client collecting every frame it receives (each parsed on its own)."""

    ws: aiohttp.ClientWebSocketResponse
    frames: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task | None = None

    async def run(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.frames.append(json.loads(msg.data))  # one JSON message per frame

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == type_]


async def listen(http: aiohttp.ClientSession, url: str) -> Listener:
    listener = Listener(await http.ws_connect(url))
    listener.task = asyncio.create_task(listener.run())
    return listener


async def close_all(listeners: list[Listener]) -> None:
    for lst in listeners:
        await lst.ws.close()
        if lst.task:
            await asyncio.wait_for(lst.task, 10)


# ---------------------------------------------------------------- the live trip, two workers

async def test_live_trip_across_two_workers(fresh_platform: Platform, http) -> None:
    p = fresh_platform
    w1, w2 = p.start_worker("w1"), p.start_worker("w2")
    await p.wait_ready(w1)
    await p.wait_ready(w2)
    gw = p.start_gateway(RATE_LIMIT_PER_MIN="100000")
    await p.wait_ready(gw, "/health")
    owner, runner, admin = user("owner"), user("runner"), user("admin")
    booking_id = insert_booking(p, owner, runner)
    track = await accept(p, booking_id, owner, runner)
    started = await p.wait_event("tracking.events", "tracking.started", booking_id=booking_id)
    assert started[0]["_key"] == booking_id
    assert started[0]["source"] == "service-tracking"
    assert started[0]["data"]["track_id"] == str(track["id"])
    assert started[0]["data"]["runner_id"] == runner.id
    assert started[0]["data"]["owner_id"] == owner.id

    # Clients on every worker: four through the round-robin gateway, one straight to each.
    urls = [ws_url(p.base_url, booking_id, t) for t in
            (owner.token, runner.token, owner.token, admin.token)]
    urls += [ws_url(w.url, booking_id, owner.token) for w in (w1, w2)]
    listeners = [await listen(http, u) for u in urls]

    await p.produce_many("runner.events", [(runner.id, fix(runner, pt)) for pt in TRACE])

    async def everyone_has(n: int):
        return all(len(lst.of("location_update")) >= n for lst in listeners)
    await wait_until(lambda: everyone_has(len(TRACE)), 60, what="every point on every client")
    for lst in listeners:
        got = lst.of("location_update")
        assert len(got) == len(TRACE)
        for frame, point in zip(got, TRACE, strict=True):
            assert frame["data"] == {
                "booking_id": booking_id, "runner_id": runner.id,
                "latitude": point["latitude"], "longitude": point["longitude"],
                "speed_kmh": point["speed_kmh"], "heading_degrees": point["heading_degrees"],
                "timestamp": point["timestamp"]}

    await wait_until(lambda: _eq(waypoint_count(p, booking_id), len(TRACE)), 30,
                     what="all waypoints stored")
    expected_km = path_length_km((pt["latitude"], pt["longitude"]) for pt in TRACE)
    assert 4.5 < expected_km < 5.5

    async with http.get(f"{p.base_url}/api/v1/tracking/{booking_id}/route",
                        headers=owner.auth) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/geo+json"
        route = json.loads(await resp.text())
    assert route["type"] == "LineString"
    assert route["coordinates"] == [[pt["longitude"], pt["latitude"]] for pt in TRACE]

    async with http.get(f"{p.base_url}/api/v1/tracking/{booking_id}", headers=runner.auth) as r:
        body = await r.json()
        assert r.status == 200, body
    dto = body["data"]
    assert dto["status"] == "active" and dto["runner_id"] == runner.id
    assert dto["total_distance_km"] == round(expected_km, 3)
    assert [w["recorded_at"] for w in dto["waypoints"]] == [pt["timestamp"] for pt in TRACE]
    assert "completed_at" not in dto

    # Redelivery: the whole trace again on runner.events, and fixes re-forwarded straight to
    # the trip topic (as after a crash). Then one new point, so its arrival proves the
    # duplicates ahead of it were handled.
    await p.produce_many("runner.events", [(runner.id, fix(runner, pt)) for pt in TRACE])
    await p.produce_many("kilat.trip-fixes", [(booking_id, new_event(
        "kilat-gps", "trip.fix", {"runner_id": runner.id, "booking_id": booking_id, **pt,
                                  "timestamp": pt["timestamp"]}).to_json()) for pt in TRACE[-5:]])
    last = TRACE[-1]
    extra = {**last, "latitude": round(last["latitude"] + 0.001, 6),
             "timestamp": "2026-11-25T10:01:20Z"}
    await p.produce("runner.events", runner.id, fix(runner, extra))
    await wait_until(lambda: everyone_has(len(TRACE) + 1), 60, what="the new point")
    for lst in listeners:
        assert len(lst.of("location_update")) == len(TRACE) + 1  # no duplicate frames
        assert lst.of("location_update")[-1]["data"]["timestamp"] == extra["timestamp"]
    full = TRACE + [extra]
    full_km = path_length_km((pt["latitude"], pt["longitude"]) for pt in full)
    await wait_until(lambda: _eq(waypoint_count(p, booking_id), len(full)), 30,
                     what="the new waypoint stored")
    async with http.get(f"{w1.url}/api/v1/admin/tracking/{booking_id}/live",
                        headers=admin.auth) as r:
        live = (await r.json())["data"]
        assert r.status == 200
    assert live["waypoint_count"] == len(full)
    assert live["distance_km"] == pytest.approx(full_km, abs=1e-9)
    assert live["status"] == "active"

    # Chat reaches every client too, as a flat frame.
    async with http.post(f"{p.base_url}/api/v1/chat/{booking_id}/messages", headers=owner.auth,
                         json={"message_type": "text", "content": "Milo is nervous"}) as r:
        msg = (await r.json())["data"]
        assert r.status == 201
    await wait_until(lambda: _all(len(lst.of("chat_message")) == 1 for lst in listeners), 30,
                     what="chat frame on every client")
    assert listeners[0].of("chat_message")[0] == {
        "type": "chat_message", "booking_id": booking_id, "message_id": msg["id"],
        "sender_id": owner.id, "sender_role": "owner", "message_type": "text",
        "content": "Milo is nervous", "created_at": msg["created_at"]}

    # Delivery completes the track with the distance of the stored route.
    await p.produce("booking.events", booking_id, new_event(
        "service-booking", "booking.delivery_confirmed", {
            "booking_id": booking_id, "booking_number": "BK-TEST01", "runner_id": runner.id,
            "owner_id": owner.id, "delivered_at": "2026-11-25T10:01:30Z"}).to_json())
    done = await p.wait_event("tracking.events", "tracking.completed", booking_id=booking_id)
    data = done[0]["data"]
    assert data["total_distance_km"] == round(full_km, 3)
    assert data["track_id"] == str(track["id"]) and data["owner_id"] == owner.id
    row = p.sql("SELECT status, total_distance_km, completed_at FROM trip_tracks "
                "WHERE booking_id = %s", (booking_id,))[0]
    assert row["status"] == "completed" and float(row["total_distance_km"]) == round(full_km, 3)
    async with http.get(f"{p.base_url}/api/v1/tracking/{booking_id}", headers=owner.auth) as r:
        dto = (await r.json())["data"]
    assert dto["status"] == "completed" and dto["total_distance_km"] == round(full_km, 3)
    assert dto["completed_at"]
    updated = await p.events_of("tracking.events", "tracking.updated", booking_id=booking_id)
    assert len(updated) == len(full)
    assert all(e["_key"] == booking_id for e in updated)
    await close_all(listeners)


async def _eq(a: Any, b: Any) -> bool:
    return a == b


async def _all(values) -> bool:
    return all(values)
