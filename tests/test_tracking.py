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
import time
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
        live = await r.json()
        assert r.status == 200, live
        live = live["data"]
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


async def fixes_accepted(http: aiohttp.ClientSession, worker) -> float:
    """Fixes the tracking agent of `worker` counted (its metrics)."""
    async with http.get(worker.url + "/metrics") as resp:
        return sum(float(line.rsplit(" ", 1)[1]) for line in (await resp.text()).splitlines()
                   if line.startswith("kilat_events_processed_total{")
                   and 'consumer="tracking-trips"' in line and 'outcome="accepted"' in line)


async def test_trip_survives_losing_its_worker(fresh_platform: Platform, http) -> None:
    """Stop the worker that owns the trip in the middle of the trace: the other worker takes
    the partition over (table from its changelog, unacked fixes redelivered) and the trip ends
    with every waypoint once, the right distance and every frame once, in order."""
    p = fresh_platform
    workers = [p.start_worker("w1"), p.start_worker("w2")]
    for w in workers:
        await p.wait_ready(w)
    owner, runner = user("owner"), user("runner")
    booking_id = insert_booking(p, owner, runner)
    await accept(p, booking_id, owner, runner)
    listeners = [await listen(http, ws_url(w.url, booking_id, owner.token)) for w in workers]

    await p.produce_many("runner.events", [(runner.id, fix(runner, pt)) for pt in TRACE[:20]])
    await wait_until(lambda: _all(len(lst.of("location_update")) == 20 for lst in listeners),
                     30, what="the trip under way")
    counts = [await fixes_accepted(http, w) for w in workers]
    owner_idx = 0 if counts[0] > counts[1] else 1
    assert counts[owner_idx] == 20 and counts[1 - owner_idx] == 0

    async def drive() -> None:  # the rest of the trip at 20 fixes/s, like a live device
        for pt in TRACE[20:]:
            await p.produce("runner.events", runner.id, fix(runner, pt))
            await asyncio.sleep(0.05)
    driving = asyncio.create_task(drive())
    started = time.monotonic()
    await asyncio.to_thread(p.stop, workers[owner_idx])
    stopping_s = time.monotonic() - started
    await driving
    survivor, client = workers[1 - owner_idx], listeners[1 - owner_idx]

    await wait_until(lambda: _eq(waypoint_count(p, booking_id), len(TRACE)), 90,
                     what="every waypoint after the failover")
    await wait_until(lambda: _eq(len(client.of("location_update")), len(TRACE)), 30,
                     what="every frame on the surviving worker")
    assert [f["data"]["timestamp"] for f in client.of("location_update")] == [
        pt["timestamp"] for pt in TRACE]
    await p.produce("booking.events", booking_id, new_event(
        "service-booking", "booking.delivery_confirmed", {
            "booking_id": booking_id, "runner_id": runner.id, "owner_id": owner.id}).to_json())
    done = await p.wait_event("tracking.events", "tracking.completed", 60,
                              booking_id=booking_id)
    expected = round(path_length_km((pt["latitude"], pt["longitude"]) for pt in TRACE), 3)
    assert done[0]["data"]["total_distance_km"] == expected
    assert await fixes_accepted(http, survivor) > 0
    assert stopping_s < 30
    await close_all([client])


async def gap_messages_recovered(http: aiohttp.ClientSession, worker, consumer: str) -> float:
    async with http.get(worker.url + "/metrics") as resp:
        return sum(float(line.rsplit(" ", 1)[1]) for line in (await resp.text()).splitlines()
                   if line.startswith("kilat_gap_messages_recovered_total{")
                   and f'consumer="{consumer}"' in line)


async def test_fixes_committed_but_never_handled_are_read_back(fresh_platform: Platform,
                                                              http) -> None:
    """The group's committed offset passes fixes no agent handled (Faust acknowledges what it
    skips while stopping): the restarted worker reads them back from its own stored positions,
    and the trip gets every waypoint and frame once."""
    p = fresh_platform
    worker = p.start_worker("w1")
    await p.wait_ready(worker)
    owner, runner = user("owner"), user("runner")
    booking_id = insert_booking(p, owner, runner)
    await accept(p, booking_id, owner, runner)
    await p.produce_many("runner.events", [(runner.id, fix(runner, pt)) for pt in TRACE[:20]])
    await wait_until(lambda: _eq(waypoint_count(p, booking_id), 20), 30, what="first waypoints")
    p.stop(worker)

    await p.produce_many("runner.events", [(runner.id, fix(runner, pt)) for pt in TRACE[20:40]])
    await p.commit_group_to_end("runner.events")

    worker = p.start_worker("w1")
    await p.wait_ready(worker)
    await wait_until(lambda: _eq(waypoint_count(p, booking_id), 40), 60,
                     what="the fixes behind the committed offset")
    assert await gap_messages_recovered(http, worker, "runner-gps") == 20
    updated = await p.events_of("tracking.events", "tracking.updated", booking_id=booking_id)
    assert sorted(e["data"]["timestamp"] for e in updated) == sorted(
        pt["timestamp"] for pt in TRACE[:40])


async def _eq(a: Any, b: Any) -> bool:
    return a == b


async def _all(values) -> bool:
    return all(values)


# ---------------------------------------------------------------- the API journey

B = "/api/v1/bookings"
KL_A, KL_B = (3.1579, 101.7117), (3.1390, 101.6869)


def booking_body() -> dict[str, Any]:
    def address(point: tuple[float, float]) -> dict[str, Any]:
        return {"line1": "1 Jalan Ampang", "line2": "", "city": "Kuala Lumpur", "state": "WP",
                "postal_code": "50450", "country": "MY", "latitude": point[0],
                "longitude": point[1]}
    return {"pet_spec": {"pet_type": "cat", "name": "Milo", "weight_kg": 4, "breed": "Persian",
                         "age_months": 24},
            "pickup_address": address(KL_A), "dropoff_address": address(KL_B)}


async def booked(platform: Platform, new_client, *, accepted: bool = True):
    owner, runner = await new_client("owner"), await new_client("runner")
    status, body = await owner.post(B, booking_body())
    assert status == 201, body
    booking_id = body["data"]["id"]
    if accepted:
        status, body = await runner.post(f"{B}/{booking_id}/accept")
        assert status == 200, body
        await wait_until(lambda: _track(platform, booking_id), 30, what="track created")
    return owner, runner, booking_id


async def test_api_journey_tracks_and_completes(platform: Platform, new_client, http) -> None:
    owner, runner, booking_id = await booked(platform, new_client)
    rid = runner.user["id"]
    lst = await listen(http, ws_url(platform.base_url, booking_id, owner.token))
    points = TRACE[:20]
    await platform.produce_many("runner.events", [(rid, new_event(
        "device", "runner.location_update", {"runner_id": rid, **pt}).to_json()) for pt in points])
    await wait_until(lambda: _eq(len(lst.of("location_update")), len(points)), 30,
                     what="frames of the API-accepted trip")
    assert [f["data"]["timestamp"] for f in lst.of("location_update")] == [
        pt["timestamp"] for pt in points]
    await wait_until(lambda: _eq(waypoint_count(platform, booking_id), len(points)), 30,
                     what="waypoints")
    # The owner pays into escrow (no pickup of an unpaid pet); deliver ends the trip.
    assert (await owner.post("/api/v1/payments/initiate", {"booking_id": booking_id}))[0] == 201
    assert (await runner.post(f"{B}/{booking_id}/pickup"))[0] == 200
    assert (await runner.post(f"{B}/{booking_id}/deliver"))[0] == 200
    done = await platform.wait_event("tracking.events", "tracking.completed",
                                     booking_id=booking_id)
    km = round(path_length_km((pt["latitude"], pt["longitude"]) for pt in points), 3)
    assert done[0]["data"]["total_distance_km"] == km
    assert done[0]["data"]["runner_id"] == rid and done[0]["data"]["owner_id"] == owner.user["id"]
    status, body = await owner.get(f"/api/v1/tracking/{booking_id}")
    assert status == 200 and body["data"]["status"] == "completed"
    assert body["data"]["total_distance_km"] == km and len(body["data"]["waypoints"]) == 20
    await close_all([lst])


async def test_cancelled_booking_cancels_track_and_drops_later_fixes(platform, new_client):
    owner, runner, booking_id = await booked(platform, new_client)
    status, body = await owner.post(f"{B}/{booking_id}/cancel", {"reason": "changed plans"})
    assert status == 200, body
    cancelled = await platform.wait_event("tracking.events", "tracking.cancelled",
                                          booking_id=booking_id)
    assert cancelled[0]["data"]["runner_id"] == runner.user["id"]
    assert (await _track(platform, booking_id))["status"] == "cancelled"
    # A fix straight onto the trip topic after the cancellation is dropped.
    before = await dropped_fixes(platform)
    await platform.produce("kilat.trip-fixes", booking_id, new_event("kilat-gps", "trip.fix", {
        "runner_id": runner.user["id"], "booking_id": booking_id, **TRACE[0]}).to_json())
    await wait_until(lambda: _gt(dropped_fixes(platform), before), 30, what="fix dropped")
    status, body = await owner.get(f"/api/v1/tracking/{booking_id}")
    assert status == 200 and body["data"]["status"] == "cancelled"
    assert waypoint_count(platform, booking_id) == 0


async def dropped_fixes(platform: Platform) -> float:
    """Fixes the tracking agent dropped for want of an active trip (worker metrics)."""
    total = 0.0
    async with aiohttp.ClientSession() as http:
        for w in platform.workers:
            async with http.get(w.url + "/metrics") as resp:
                for line in (await resp.text()).splitlines():
                    if line.startswith("kilat_events_processed_total{") and \
                            'consumer="tracking-trips"' in line and 'outcome="no_trip"' in line:
                        total += float(line.rsplit(" ", 1)[1])
    return total


async def _gt(value, floor: float) -> bool:
    return await value > floor


# ---------------------------------------------------------------- WebSocket auth

async def _refusal(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await http.ws_connect(url)
    async with http.get(url) as resp:  # the same checks answer a plain GET with the body
        assert resp.status == err.value.status
        return resp.status, await resp.json()


async def test_websocket_refusals(platform: Platform, new_client, http) -> None:
    owner, runner, booking_id = await booked(platform, new_client)
    outsider = await new_client("owner")
    base = platform.base_url
    path = f"{base}/ws/tracking/{booking_id}"
    assert await _refusal(http, path) == (401, {"error": "token query parameter is required"})
    assert await _refusal(http, path + "?token=nope") == (
        401, {"error": "invalid or expired token"})
    assert await _refusal(http, path + f"?token={owner.refresh_token}") == (
        401, {"error": "invalid or expired token"})
    assert await _refusal(http, f"{base}/ws/tracking/not-a-uuid?token={owner.token}") == (
        400, {"error": "invalid booking ID format"})
    assert await _refusal(http, ws_url(base, str(uuid.uuid4()), owner.token)) == (
        404, {"error": "booking not found"})
    assert await _refusal(http, ws_url(base, booking_id, outsider.token)) == (
        403, {"error": "forbidden"})
    for who in (owner, runner, user("admin")):
        ws = await http.ws_connect(ws_url(base, booking_id, who.token))
        await ws.send_str("x" * 100)  # client messages are read and discarded
        await ws.close()


# ---------------------------------------------------------------- REST

async def test_tracking_reads_and_errors(platform: Platform, new_client, http) -> None:
    owner, runner, booking_id = await booked(platform, new_client)
    outsider = await new_client("owner")
    status, body = await owner.get(f"/api/v1/tracking/{booking_id}")
    assert status == 200, body
    track = await _track(platform, booking_id)
    assert body["data"] == {
        "id": str(track["id"]), "booking_id": booking_id, "runner_id": runner.user["id"],
        "status": "active", "total_distance_km": 0.0, "started_at": body["data"]["started_at"],
        "waypoints": []}
    async with http.get(f"{platform.base_url}/api/v1/tracking/{booking_id}/route",
                        headers={"Authorization": f"Bearer {runner.token}"}) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/geo+json"
        assert json.loads(await resp.text()) == {"type": "LineString", "coordinates": []}
    forbidden = {"success": False, "error": "forbidden", "detail": ""}
    assert await outsider.get(f"/api/v1/tracking/{booking_id}") == (403, forbidden)
    assert await outsider.get(f"/api/v1/tracking/{booking_id}/route") == (403, forbidden)
    assert await owner.get("/api/v1/tracking/nope") == (
        400, {"success": False, "error": "invalid booking ID"})
    assert (await owner.get(f"/api/v1/tracking/{booking_id}", token=""))[0] == 401
    _, _, requested = await booked(platform, new_client, accepted=False)
    admin = type(owner)(owner.session, owner.base, user("admin").token)
    status, body = await admin.get(f"/api/v1/tracking/{requested}")
    assert (status, body) == (404, {"success": False, "error": "tracking not found",
                                    "detail": f"tracking with id '{requested}' was not found"})


async def test_share_links(platform: Platform, new_client, http) -> None:
    owner, runner, booking_id = await booked(platform, new_client)
    outsider = await new_client("owner")
    status, body = await owner.post(f"/api/v1/tracking/{booking_id}/share")
    assert status == 201, body
    share = body["data"]
    assert share["booking_id"] == booking_id
    assert len(share["share_token"]) == 32 and int(share["share_token"], 16) >= 0
    assert share["share_url"] == f"/api/v1/tracking/shared/{share['share_token']}"
    row = platform.sql("SELECT expires_at - created_at AS ttl FROM shared_trips WHERE id = %s",
                       (share["id"],))[0]
    assert abs(row["ttl"].total_seconds() - 24 * 3600) < 5
    async with http.get(platform.base_url + share["share_url"]) as resp:  # public
        public = await resp.json()
        assert resp.status == 200, public
    assert public == {"success": True, "data": {
        "booking_id": booking_id, "status": "active", "waypoints": [],
        "expires_at": share["expires_at"]}}
    assert (await outsider.post(f"/api/v1/tracking/{booking_id}/share"))[0] == 403

    async def public_get(token: str):
        async with http.get(f"{platform.base_url}/api/v1/tracking/shared/{token}") as resp:
            return resp.status, await resp.json()
    assert await public_get("f" * 32) == (404, {"success": False,
                                                "error": "share link not found"})
    platform.sql("UPDATE shared_trips SET expires_at = now() - interval '1 second' "
                 "WHERE id = %s", (share["id"],))
    assert await public_get(share["share_token"]) == (
        404, {"success": False, "error": "share link has expired"})
    owner2, _, requested = await booked(platform, new_client, accepted=False)
    status, body = await owner2.post(f"/api/v1/tracking/{requested}/share")
    assert status == 201, body
    assert await public_get(body["data"]["share_token"]) == (
        404, {"success": False, "error": "tracking data not found"})


async def test_chat(platform: Platform, new_client, http) -> None:
    owner, runner, booking_id = await booked(platform, new_client)
    outsider = await new_client("owner")
    lst = await listen(http, ws_url(platform.base_url, booking_id, runner.token))
    path = f"/api/v1/chat/{booking_id}/messages"
    status, body = await owner.post(path, {"message_type": "text", "content": "hello"})
    assert status == 201, body
    first = body["data"]
    assert first["booking_id"] == booking_id and first["sender_id"] == owner.user["id"]
    assert first["sender_role"] == "owner" and first["message_type"] == "text"
    status, body = await runner.post(path, {"message_type": "quick_reply", "content": "5 min"})
    assert status == 201 and body["data"]["sender_role"] == "runner"
    status, body = await owner.post(path, {"message_type": "video", "content": "x"})
    assert status == 400 and body["success"] is False
    assert "message_type" in body["error"]
    status, body = await owner.post(path, {"message_type": "text"})
    assert status == 400 and "Content" in body["error"]
    assert (await outsider.post(path, {"message_type": "text", "content": "hi"}))[0] == 403
    assert (await outsider.get(path))[0] == 403
    assert (await owner.post(f"/api/v1/chat/{uuid.uuid4()}/messages",
                             {"message_type": "text", "content": "hi"}))[0] == 404

    status, body = await runner.get(path)
    assert status == 200
    assert [m["content"] for m in body["data"]] == ["hello", "5 min"]
    assert body["pagination"] == {"total": 2, "page": 1, "limit": 50, "total_pages": 1}
    status, body = await owner.get(path + "?page=2&limit=1")
    assert [m["content"] for m in body["data"]] == ["5 min"]
    assert body["pagination"] == {"total": 2, "page": 2, "limit": 1, "total_pages": 2}

    sent = await platform.wait_event("chat.events", "chat.message_sent", booking_id=booking_id)
    assert sent[0]["_key"] == booking_id and sent[0]["data"]["message_id"] == first["id"]
    await wait_until(lambda: _eq(len(lst.of("chat_message")), 2), 30, what="chat frames")
    assert lst.of("chat_message")[0] == {
        "type": "chat_message", "booking_id": booking_id, "message_id": first["id"],
        "sender_id": owner.user["id"], "sender_role": "owner", "message_type": "text",
        "content": "hello", "created_at": first["created_at"]}
    await close_all([lst])
