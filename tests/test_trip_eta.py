"""ETA and arrival alerts on the real platform: the recorded trace driven through a booking
made, accepted, paid and picked up through the gateway; ETA fields on the owner's and the
share page's `location_update` frames; one `tracking.runner_arriving` per leg, pushed to the
owner once even when the fix that raised it is redelivered."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from core.security import issue_access_token
from domain import eta
from models.events import new_event
from tests.platform import wait_until
from tests.test_booking import book, pay
from tests.test_notifications import Env, notifying_platform, sign_up, with_contacts
from tests.test_runner import VEHICLE
from tests.test_tracking import TRACE, fix, listen, ws_url
from tests.unit.test_eta import JALAN_AMPANG, MERDEKA, nearest_index

# The trace turns at Jalan Ampang (the pickup here) and ends at Merdeka Square (the drop-off).
PICKUP_AT = nearest_index(JALAN_AMPANG)


@pytest.fixture(scope="module")
async def env(infra, tmp_path_factory) -> AsyncIterator[Env]:
    async with notifying_platform(tmp_path_factory.mktemp("eta")) as e:
        yield e


def non_increasing(values: list[float], tolerance: float) -> bool:
    return all(b <= a + tolerance for a, b in zip(values, values[1:], strict=False))


async def test_eta_and_arrival_alerts_along_the_recorded_trace(env: Env, http) -> None:
    p = env.p
    owner = await sign_up(env, http, "owner")
    contacts = await with_contacts(owner)
    runner = await sign_up(env, http, "runner")
    assert (await runner.post("/api/v1/runners", VEHICLE))[0] == 201
    booking = await book(owner, pickup=tuple(JALAN_AMPANG), dropoff=tuple(MERDEKA))
    bid, path = booking["id"], f"/api/v1/bookings/{booking['id']}"
    assert (await runner.post(f"{path}/accept"))[0] == 200
    await pay(owner, bid)
    status, body = await owner.post(f"/api/v1/tracking/{bid}/share")
    assert status == 201, body
    share_token = body["data"]["share_token"]
    admin = issue_access_token(str(uuid.uuid4()), "ops@kilat.test", "admin")

    async def trip_entry() -> dict | None:
        async with http.get(f"{p.base_url}/api/v1/admin/tracking/{bid}/live",
                            headers={"Authorization": f"Bearer {admin}"}) as r:
            return (await r.json())["data"] if r.status == 200 else None

    trip = await wait_until(trip_entry, 60, what="trip entry with its targets")
    assert trip["pickup"] == JALAN_AMPANG and trip["dropoff"] == MERDEKA
    assert trip["leg"] == "pickup"
    # Fixes are forwarded to the trip once the runner stage knows the assignment, which
    # precedes them on the runner's partition.
    await p.wait_event("runner.events", "runner.assigned", booking_id=bid)
    base_ws = p.base_url.replace("http", "ws", 1)
    owner_ws = await listen(http, ws_url(p.base_url, bid, owner.token))
    share_ws = await listen(http, f"{base_ws}/ws/tracking/shared/{share_token}")

    rid = runner.user["id"]
    await p.produce_many("runner.events", [(rid, fix(runner_user(rid), pt))
                                           for pt in TRACE[:PICKUP_AT + 1]])
    await wait_until(lambda: _at_least(owner_ws.of("location_update"), PICKUP_AT + 1), 60,
                     what="the pickup leg's frames")
    assert (await runner.post(f"{path}/pickup"))[0] == 200
    await wait_until(lambda: _leg_is(trip_entry, "dropoff"), 30, what="the drop-off leg")
    await p.produce_many("runner.events", [(rid, fix(runner_user(rid), pt))
                                           for pt in TRACE[PICKUP_AT + 1:]])
    await wait_until(lambda: _at_least(owner_ws.of("location_update"), len(TRACE)), 60,
                     what="every frame")

    frames = owner_ws.of("location_update")
    assert all({"eta_minutes", "distance_remaining_km"} <= set(f["data"]) for f in frames)
    assert all(f["eta_minutes"] == f["data"]["eta_minutes"] for f in frames)  # flat copy too
    to_pickup = frames[:PICKUP_AT + 1]
    # Heading straight for the pickup: the ETA falls (GPS jitter and speed smoothing aside)
    # and is about 0 on arrival.
    assert non_increasing([f["data"]["distance_remaining_km"] for f in to_pickup], 0.02)
    assert non_increasing([f["data"]["eta_minutes"] for f in to_pickup[1:]], 0.1)
    assert to_pickup[0]["data"]["eta_minutes"] > 1 > to_pickup[-1]["data"]["eta_minutes"]
    assert to_pickup[-1]["data"]["distance_remaining_km"] < 0.05
    # After pickup, to the drop-off: the last straight stretch falls to about 0.
    tail = [f["data"]["distance_remaining_km"] for f in frames[-15:]]
    assert non_increasing(tail, 0.02) and tail[-1] < 0.05
    assert frames[-1]["data"]["eta_minutes"] == 0.0

    # The share page's socket gets the same ETA (and nothing private).
    await wait_until(lambda: _at_least(share_ws.of("location_update"), len(TRACE)), 30,
                     what="the share page's frames")
    public = share_ws.of("location_update")
    assert [f["data"]["eta_minutes"] for f in public] == [f["data"]["eta_minutes"]
                                                          for f in frames]
    assert "runner_id" not in public[0]["data"]

    # One alert per leg, each under its leg's id.
    arriving = await wait_until(lambda: _events(p, bid, 2), 30, what="two arrival events")
    assert [e["data"]["leg"] for e in arriving] == ["pickup", "dropoff"]
    assert [e["id"] for e in arriving] == [eta.arriving_event_id(bid, leg)
                                           for leg in ("pickup", "dropoff")]
    assert all(e["data"]["distance_km"] <= eta.ARRIVING_RADIUS_KM for e in arriving)

    def arrival_pushes() -> list:
        return [m for m in env.fcm.to(contacts["token"])
                if m.data.get("event_type") == "tracking.runner_arriving"]
    pushes = await wait_until(lambda: _ready(arrival_pushes(), 2), 30, what="arrival pushes")
    first = arriving[0]["data"]
    assert (pushes[0].title, pushes[0].body) == (
        "Your Runner Is Arriving",
        f"Your runner is about {first['minutes_text']} away from the pickup point for booking "
        f"{booking['booking_number']}")

    # The fix that raised the pickup alert, redelivered to the trip stage (as after a crash):
    # the alert is published again under the same id, and the owner is not told twice.
    k = next(i for i, f in enumerate(frames) if f["timestamp"] == _when(first["fix_timestamp"]))
    point = TRACE[k]
    await p.produce("kilat.trip-fixes", bid, new_event("kilat-gps", "trip.fix", {
        "runner_id": rid, "booking_id": bid, **point},
        event_id=f"fix:{bid}:{rid}:{first['fix_timestamp']}").to_json())
    again = await wait_until(lambda: _events(p, bid, 3), 30, what="the alert published again")
    assert again[2]["id"] == arriving[0]["id"]
    await wait_until(lambda: _handled_twice(p), 30, what="the repeat seen by notifications")
    assert len(arrival_pushes()) == 2
    rows = p.sql("SELECT count(*) AS n FROM notifications WHERE booking_id = %s "
                 "AND event_type = 'tracking.runner_arriving'", (bid,))
    assert rows == [{"n": 2}]
    for lst in (owner_ws, share_ws):
        await lst.ws.close()


def runner_user(user_id: str):
    class _Runner:  # what tests.test_tracking.fix needs of a user
        id = user_id
    return _Runner()


def _when(epoch: float) -> str:
    from datetime import UTC, datetime
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _at_least(items: list, n: int) -> bool:
    return len(items) >= n


async def _ready(items: list, n: int) -> list | None:
    return items if len(items) >= n else None


async def _leg_is(trip_entry, leg: str) -> bool:
    trip = await trip_entry()
    return bool(trip) and trip.get("leg") == leg


async def _events(p, bid: str, n: int) -> list | None:
    found = await p.events_of("tracking.events", "tracking.runner_arriving", booking_id=bid)
    return found if len(found) >= n else None


async def _handled_twice(p) -> bool:
    return await p.processed_count("notification-tracking", "tracking.runner_arriving",
                                   "duplicate") >= 1
