"""Booking domain through the gateway, on real Kafka and PostGIS: create and pricing, lists,
every transition with its events, errors, decline, rebook, photos, pets, admin, the race of two
accepts, no pickup without a held payment, and the escrow that waits for the owner's confirm.
The confirmation window (auto-confirm) and disputes are in tests/test_money_waits.py."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import pytest

from core.db import Database
from domain import booking as rules
from models.events import new_event
from stores import booking as store
from tests.platform import Platform, days_ahead, wait_until

KL_A = (3.139, 101.6869)
KL_B = (3.15, 101.71)
B = "/api/v1/bookings"


def address(point: tuple[float, float], line1: str = "1 Jalan Ampang") -> dict[str, Any]:
    return {"line1": line1, "line2": "", "city": "Kuala Lumpur", "state": "WP",
            "postal_code": "50450", "country": "MY", "latitude": point[0], "longitude": point[1]}


def booking_body(pet_type: str = "cat", weight: float = 4, pickup=KL_A, dropoff=KL_B,
                 **extra: Any) -> dict[str, Any]:
    return {"pet_spec": {"pet_type": pet_type, "name": "Milo", "weight_kg": weight,
                         "breed": "Persian", "age_months": 24},
            "pickup_address": address(pickup), "dropoff_address": address(dropoff, "2 Jalan"),
            "notes": "ring the bell", **extra}


async def book(owner, **kw: Any) -> dict[str, Any]:
    status, body = await owner.post(B, booking_body(**kw))
    assert status == 201, body
    return body["data"]


@pytest.fixture
def admin(new_admin):
    """An admin signed in through the API (created with `kilat create-admin`)."""
    return new_admin


async def pay(owner, booking_id: str) -> dict[str, Any]:
    """The owner pays into escrow (a runner may pick the pet up only once it is held)."""
    status, body = await owner.post("/api/v1/payments/initiate", {"booking_id": booking_id})
    assert status == 201 and body["data"]["escrow_status"] == "held", body
    return body["data"]


async def booking_events(platform: Platform, booking_id: str, type_: str | None = None):
    return await platform.events_of("booking.events", type_, booking_id=booking_id)


# ---------------------------------------------------------------- create and pricing

@pytest.mark.parametrize(("pet_type", "weight", "price", "crate", "temp"), [
    ("cat", 4, 1510, "small", False), ("dog", 8, 2210, "medium", False),
    ("reptile", 35, 4010, "xlarge", True), ("hamster", 0.3, 1710, "small", False),
])
async def test_create_prices_booking_and_emits_requested(platform, new_client, pet_type, weight,
                                                         price, crate, temp):
    owner = await new_client("owner")
    data = await book(owner, pet_type=pet_type, weight=weight)
    assert re.fullmatch(r"BK-[ABCDEFGHJKLMNPQRSTUVWXYZ23456789]{6}", data["booking_number"])
    assert data["estimated_price_cents"] == price
    assert data["status"] == "requested" and data["version"] == 1 and data["currency"] == "MYR"
    assert data["owner_id"] == owner.user["id"]
    assert "runner_id" not in data and "final_price_cents" not in data
    assert data["crate_requirement"] == {
        "minimum_size": crate, "needs_ventilation": True, "needs_temp_control": temp,
        "minimum_weight_capacity": pytest.approx(weight * 1.2)}
    assert data["pet_spec"] == {"pet_type": pet_type, "breed": "Persian", "name": "Milo",
                                "weight_kg": weight, "age_months": 24, "vaccinations": [],
                                "special_needs": "", "photo_url": ""}
    assert data["pickup_address"] == address(KL_A)
    assert data["notes"] == "ring the bell"
    assert list(data) == ["id", "booking_number", "owner_id", "status", "pet_spec",
                          "crate_requirement", "pickup_address", "dropoff_address",
                          "estimated_price_cents", "currency", "notes", "version", "created_at",
                          "updated_at"]

    [event] = await platform.wait_event("booking.events", "booking.requested",
                                        booking_id=data["id"])
    assert event["_key"] == data["id"] and event["source"] == "service-booking"
    assert event["data"] == {
        "booking_id": data["id"], "booking_number": data["booking_number"],
        "owner_id": owner.user["id"], "pet_type": pet_type, "pet_name": "Milo",
        "pickup_lat": KL_A[0], "pickup_lng": KL_A[1], "dropoff_lat": KL_B[0],
        "dropoff_lng": KL_B[1], "estimated_price_cents": price, "currency": "MYR",
        "occurred_at": event["data"]["occurred_at"]}
    rows = platform.sql("SELECT ST_Y(pickup_location::geometry) AS lat, "
                        "ST_X(pickup_location::geometry) AS lng FROM bookings WHERE id = %s",
                        (data["id"],))
    assert rows == [{"lat": KL_A[0], "lng": KL_A[1]}]
    assert platform.sql("SELECT from_status, to_status FROM booking_status_history "
                        "WHERE booking_id = %s", (data["id"],)) == [
        {"from_status": None, "to_status": "requested"}]


async def test_scheduled_at_rfc3339_and_local_time(platform, new_client):
    owner = await new_client("owner")
    local, utc = days_ahead(1)
    data = await book(owner, scheduled_at=local + "+08:00")
    assert data["scheduled_at"] == utc
    data = await book(owner, scheduled_at=local)  # Flutter, no offset: Malaysia time
    assert data["scheduled_at"] == utc
    status, body = await owner.post(B, booking_body(scheduled_at="next tuesday"))
    assert status == 400 and body["success"] is False
    assert body["error"].startswith("invalid scheduled_at")


async def test_scheduled_at_within_now_and_90_days(platform, new_client):
    owner = await new_client("owner")
    window = {"success": False,
              "error": "scheduled_at must be between 5 minutes ago and 90 days from now"}
    for when in ("9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00Z", "2000-01-01T00:00:00Z",
                 days_ahead(91)[0], days_ahead(-1)[0]):
        assert await owner.post(B, booking_body(scheduled_at=when)) == (400, window), when
    assert (await book(owner, scheduled_at=days_ahead(89)[0]))["scheduled_at"] == days_ahead(89)[1]


async def test_nulls_from_flutter_clients_mean_absent(platform, new_client):
    """app-mobile's generated toJson() sends null for every unset field: optional ones take
    their defaults (as the original's JSON decoding did), required ones are still required."""
    owner = await new_client("owner")
    body = booking_body(scheduled_at=None, notes=None)
    body["pet_spec"].update(breed=None, age_months=None, vaccinations=None, photo_url=None,
                            special_needs=None)
    body["pickup_address"].update(line2=None, postal_code=None)
    status, resp = await owner.post(B, body)
    assert status == 201, resp
    data = resp["data"]
    assert data["pet_spec"]["breed"] == "" and data["pet_spec"]["age_months"] == 0
    assert data["pet_spec"]["vaccinations"] == [] and "scheduled_at" not in data
    body["pet_spec"]["name"] = None
    assert await owner.post(B, body) == (400, {"success": False, "error":
        "Key: 'CreateBookingRequest.PetSpec.Name' Error:Field validation for 'Name' "
        "failed on the 'required' tag"})


async def test_create_validation_errors(platform, new_client, client):
    owner = await new_client("owner")

    async def create(body):
        return await owner.post(B, body)

    body = booking_body()
    del body["pet_spec"]["name"]
    assert await create(body) == (400, {"success": False, "error":
        "Key: 'CreateBookingRequest.PetSpec.Name' Error:Field validation for 'Name' "
        "failed on the 'required' tag"})
    assert await create(booking_body(weight=0)) == (400, {"success": False, "error":
        "Key: 'CreateBookingRequest.PetSpec.WeightKg' Error:Field validation for 'WeightKg' "
        "failed on the 'required' tag"})
    assert await create(booking_body(pet_type="dragon")) == (
        400, {"success": False, "error": "invalid pet type: dragon", "detail": ""})
    assert await create(booking_body(weight=-2)) == (
        400, {"success": False, "error": "pet weight must be positive", "detail": ""})
    status, resp = await create(booking_body(pickup=(95.0, 101.0)))
    assert status == 400 and "PickupAddress.Latitude" in resp["error"]
    status, resp = await owner.post(B, data="{nope", headers={"Content-Type": "application/json"})
    assert (status, resp) == (400, {"success": False, "error": "invalid request body"})

    runner = await new_client("runner")
    assert await runner.post(B, booking_body()) == (403, {"error": "insufficient permissions"})
    assert await client.post(B, booking_body()) == (
        401, {"error": "authorization header is required"})


# ---------------------------------------------------------------- get, errors, visibility

async def test_get_errors_and_visibility(platform, new_client, admin):
    owner, other_owner = await new_client("owner"), await new_client("owner")
    runner, other_runner = await new_client("runner"), await new_client("runner")
    data = await book(owner)
    path = f"{B}/{data['id']}"

    assert await owner.get(f"{B}/not-a-uuid") == (
        400, {"success": False, "error": "invalid booking ID"})
    missing = str(uuid.uuid4())
    assert await owner.get(f"{B}/{missing}") == (404, {
        "success": False, "error": "Booking not found",
        "detail": f"Booking with id '{missing}' was not found"})
    assert await owner.post(f"{B}/{missing}/accept") == (403, {"error": "insufficient permissions"})
    assert (await runner.post(f"{B}/{missing}/accept"))[0] == 404

    assert (await owner.get(path))[1]["data"] == data
    assert (await admin.get(path))[0] == 200
    assert (await runner.get(path))[0] == 200  # open job: any runner may look at it
    assert await other_owner.get(path) == (403, {
        "success": False, "error": "forbidden",
        "detail": "you are not a participant of this booking"})

    assert (await runner.post(f"{path}/accept"))[0] == 200
    assert (await runner.get(path))[0] == 200
    assert (await other_runner.get(path))[0] == 403
    assert (await other_runner.post(f"{path}/cancel"))[0] == 403
    assert (await other_owner.get(f"{path}/photos"))[0] == 403


# ---------------------------------------------------------------- lifecycle and events

async def test_full_lifecycle_with_events(platform, new_client):
    owner, runner, other = (await new_client("owner"), await new_client("runner"),
                            await new_client("runner"))
    data = await book(owner)
    bid, path = data["id"], f"{B}/{data['id']}"
    rid, oid = runner.user["id"], owner.user["id"]

    assert await other.post(f"{path}/pickup") == (
        403, {"success": False, "error": "not your booking", "detail": ""})
    status, body = await runner.post(f"{path}/accept")
    assert status == 200, body
    assert body["data"]["status"] == "accepted" and body["data"]["runner_id"] == rid
    assert body["data"]["version"] == 2 and "accepted_at" not in body["data"]
    assert platform.sql("SELECT accepted_at IS NOT NULL AS set FROM bookings WHERE id = %s",
                        (bid,)) == [{"set": True}]

    assert await runner.post(f"{path}/deliver") == (422, {
        "success": False, "error": "cannot transition from 'accepted' to 'delivered'",
        "detail": ""})
    assert (await other.post(f"{path}/pickup"))[1]["error"] == "not your booking"
    # Nobody paid yet: no pickup (DESIGN 12).
    assert await runner.post(f"{path}/pickup") == (422, {
        "success": False, "error": "escrow not held",
        "detail": "the owner has not paid for this booking yet; a pet can be picked up only "
                  "while its payment is held in escrow"})
    await pay(owner, bid)

    status, body = await runner.post(f"{path}/pickup")
    assert status == 200 and body["data"]["status"] == "in_progress"
    picked_up_at = body["data"]["picked_up_at"]
    status, body = await runner.post(f"{path}/deliver")
    assert status == 200 and body["data"]["status"] == "delivered"
    delivered_at = body["data"]["delivered_at"]
    # The runner's deliver moves no money: the escrow waits for the owner.
    [delivery] = await platform.wait_event("booking.events", "booking.delivery_confirmed",
                                           booking_id=bid)

    async def window_open():
        return platform.sql("SELECT 1 FROM processed_events WHERE consumer = "
                            "'booking-confirm-window' AND event_id = %s", (delivery["id"],))
    await wait_until(window_open, 30, what="delivery seen by the confirmation window")
    assert (await owner.get(f"/api/v1/payments/booking/{bid}"))[1]["data"]["escrow_status"] == (
        "held")

    assert (await runner.post(f"{path}/confirm"))[0] == 403  # owners confirm
    assert (await (await new_client("owner")).post(f"{path}/confirm"))[0] == 403
    assert await owner.post(f"{path}/cancel") == (422, {
        "success": False, "error": "cannot transition from 'delivered' to 'cancelled'",
        "detail": ""})
    status, body = await owner.post(f"{path}/confirm")
    assert status == 200, body
    assert body["data"]["status"] == "completed"
    assert body["data"]["final_price_cents"] == 1510 and body["data"]["version"] == 5
    assert "dispute" not in body["data"]
    assert (await owner.post(f"{path}/confirm"))[1]["error"] == (
        "cannot transition from 'completed' to 'completed'")
    # The owner's confirm releases the escrow to the runner, after (never before) the confirm.
    [released] = await platform.wait_event("payment.events", "payment.escrow_released",
                                           booking_id=bid)
    assert released["data"]["runner_id"] == rid
    confirmed = platform.sql("SELECT created_at FROM booking_status_history WHERE booking_id = %s "
                             "AND to_status = 'completed'", (bid,))[0]["created_at"]
    assert platform.sql("SELECT escrow_released_at FROM payments WHERE booking_id = %s",
                        (bid,))[0]["escrow_released_at"] >= confirmed

    base = {"booking_id": bid, "booking_number": data["booking_number"]}
    expected = {
        "booking.accepted": {**base, "runner_id": rid, "owner_id": oid,
                             "pickup_lat": KL_A[0], "pickup_lng": KL_A[1],
                             "dropoff_lat": KL_B[0], "dropoff_lng": KL_B[1]},
        "booking.pet_picked_up": {**base, "runner_id": rid, "owner_id": oid,
                                  "picked_up_at": picked_up_at},
        "booking.delivery_confirmed": {**base, "runner_id": rid, "owner_id": oid,
                                       "delivered_at": delivered_at},
        "booking.completed": {**base, "runner_id": rid, "owner_id": oid,
                              "final_price_cents": 1510, "currency": "MYR",
                              "confirmed_by": "owner", "auto_confirmed": False},
    }
    for type_, payload in expected.items():
        [event] = await platform.wait_event("booking.events", type_, booking_id=bid)
        assert event["_key"] == bid
        assert {k: v for k, v in event["data"].items() if k != "occurred_at"} == payload
    events = await booking_events(platform, bid)
    assert [e["type"] for e in events] == ["booking.requested", *expected]  # one partition, in order

    assigned = await platform.wait_event("runner.events", "runner.assigned", booking_id=bid)
    released = await platform.wait_event("runner.events", "runner.released", booking_id=bid)
    assert [(e["_key"], e["data"]["runner_id"]) for e in assigned + released] == [
        (rid, rid), (rid, rid)]

    history = platform.sql("SELECT from_status, to_status, changed_by FROM "
                           "booking_status_history WHERE booking_id = %s ORDER BY created_at",
                           (bid,))
    assert [(h["from_status"], h["to_status"]) for h in history] == [
        (None, "requested"), ("requested", "accepted"), ("accepted", "in_progress"),
        ("in_progress", "delivered"), ("delivered", "completed")]
    assert history[1]["changed_by"] == rid and history[4]["changed_by"] == oid


async def test_cancel(platform, new_client, admin):
    owner, runner = await new_client("owner"), await new_client("runner")
    first = await book(owner)
    status, body = await owner.post(f"{B}/{first['id']}/cancel", {"reason": "changed plans"})
    assert status == 200, body
    assert body["data"]["status"] == "cancelled" and body["data"]["cancel_note"] == "changed plans"
    assert "cancelled_at" in body["data"]
    [event] = await platform.wait_event("booking.events", "booking.cancelled",
                                        booking_id=first["id"])
    assert {k: v for k, v in event["data"].items() if k != "occurred_at"} == {
        "booking_id": first["id"], "booking_number": first["booking_number"],
        "cancelled_by": owner.user["id"], "reason": "changed plans",
        "owner_id": owner.user["id"], "runner_id": None}
    assert await platform.events_of("runner.events", "runner.released",
                                    booking_id=first["id"]) == []

    # The assigned runner may cancel (no body needed); the runner is released.
    second = await book(owner)
    await runner.post(f"{B}/{second['id']}/accept")
    status, body = await runner.post(f"{B}/{second['id']}/cancel")
    assert status == 200 and body["data"]["status"] == "cancelled"
    [event] = await platform.wait_event("booking.events", "booking.cancelled",
                                        booking_id=second["id"])
    assert event["data"]["runner_id"] == runner.user["id"]
    assert event["data"]["cancelled_by"] == runner.user["id"] and event["data"]["reason"] == ""
    [released] = await platform.wait_event("runner.events", "runner.released",
                                           booking_id=second["id"])
    assert released["_key"] == runner.user["id"]

    third = await book(owner)
    assert (await admin.post(f"{B}/{third['id']}/cancel", {"reason": "fraud"}))[0] == 200
    assert (await owner.post(f"{B}/{third['id']}/cancel"))[1]["error"] == (
        "cannot transition from 'cancelled' to 'cancelled'")


async def test_decline(platform, new_client):
    owner, runner, other = (await new_client("owner"), await new_client("runner"),
                            await new_client("runner"))
    data = await book(owner)
    path = f"{B}/{data['id']}"
    await runner.post(f"{path}/accept")

    status, body = await runner.post(f"{path}/decline", data="oops",
                                     headers={"Content-Type": "application/json"})
    assert (status, body) == (400, {"success": False, "error": "invalid request body"})
    assert await runner.post(f"{path}/decline", {"reason": "lazy"}) == (400, {
        "success": False, "error": "reason must be one of: too_far, cannot_transport, "
        "already_busy, pickup_issue, other", "detail": ""})
    assert await other.post(f"{path}/decline", {"reason": "too_far"}) == (
        403, {"success": False, "error": "not your booking", "detail": ""})

    status, body = await runner.post(f"{path}/decline", {"reason": "too_far"})
    assert status == 200, body
    assert body["data"]["status"] == "requested" and "runner_id" not in body["data"]
    assert platform.sql("SELECT runner_id::text, reason FROM booking_decline_reasons "
                        "WHERE booking_id = %s", (data["id"],)) == [
        {"runner_id": runner.user["id"], "reason": "too_far"}]
    assert platform.sql("SELECT runner_id, accepted_at FROM bookings WHERE id = %s",
                        (data["id"],)) == [{"runner_id": None, "accepted_at": None}]
    [released] = await platform.wait_event("runner.events", "runner.released",
                                           booking_id=data["id"])
    assert released["_key"] == runner.user["id"]

    # Back on the market: another runner takes it, picks up, and cannot decline any more.
    await pay(owner, data["id"])
    assert (await other.post(f"{path}/accept"))[0] == 200
    assert (await other.post(f"{path}/pickup"))[0] == 200
    assert await other.post(f"{path}/decline", {"reason": "other"}) == (
        409, {"success": False, "error": "cannot decline booking in state 'in_progress'",
              "detail": ""})


async def test_rebook(platform, new_client):
    owner, stranger = await new_client("owner"), await new_client("owner")
    old = await book(owner, pet_type="dog", weight=8, scheduled_at=days_ahead(2)[0])
    await owner.post(f"{B}/{old['id']}/cancel")
    status, body = await owner.post(f"{B}/{old['id']}/rebook")
    assert status == 201, body
    new = body["data"]
    assert new["id"] != old["id"] and new["booking_number"] != old["booking_number"]
    assert new["status"] == "requested" and "scheduled_at" not in new
    for key in ("pet_spec", "pickup_address", "dropoff_address", "notes",
                "estimated_price_cents", "crate_requirement"):
        assert new[key] == old[key]
    await platform.wait_event("booking.events", "booking.requested", booking_id=new["id"])
    assert await stranger.post(f"{B}/{old['id']}/rebook") == (403, {
        "success": False, "error": "booking does not belong to this user", "detail": ""})


async def test_photos(platform, new_client):
    owner, runner, other = (await new_client("owner"), await new_client("runner"),
                            await new_client("runner"))
    data = await book(owner)
    path = f"{B}/{data['id']}"
    await runner.post(f"{path}/accept")
    photo = {"photo_type": "pickup", "photo_url": "https://cdn.kilat.test/p1.jpg",
             "caption": "in crate"}
    assert (await other.post(f"{path}/photo", photo))[1]["error"] == "not your booking"
    assert await runner.post(f"{path}/photo", {**photo, "photo_type": "selfie"}) == (
        400, {"success": False, "error": "invalid photo type: selfie", "detail": ""})
    status, body = await runner.post(f"{path}/photo", {"photo_type": "pickup"})
    assert status == 400 and "'PhotoUrl' failed on the 'required' tag" in body["error"]

    status, body = await runner.post(f"{path}/photo", photo)
    assert status == 201, body
    assert list(body["data"]) == ["id", "booking_id", "runner_id", "photo_type", "photo_url",
                                  "caption", "taken_at", "created_at"]
    assert body["data"]["runner_id"] == runner.user["id"]
    await runner.post(f"{path}/photo", {**photo, "photo_type": "delivery", "caption": ""})
    status, body = await owner.get(f"{path}/photos")
    assert status == 200
    assert [(p["photo_type"], p["caption"]) for p in body["data"]] == [
        ("pickup", "in crate"), ("delivery", "")]
    assert (await runner.get(f"{path}/photos"))[0] == 200
    assert (await other.get(f"{path}/photos"))[0] == 403


# ---------------------------------------------------------------- lists, admin

async def test_list_filters_and_pagination(platform, new_client, admin):
    owner, runner = await new_client("owner"), await new_client("runner")
    ids = [(await book(owner))["id"] for _ in range(3)]
    await runner.post(f"{B}/{ids[0]}/accept")
    await owner.post(f"{B}/{ids[1]}/cancel")

    status, body = await owner.get(f"{B}?page=1&limit=2")
    assert status == 200
    assert [b["id"] for b in body["data"]] == [ids[2], ids[1]]  # newest first
    assert body["pagination"] == {"total": 3, "page": 1, "limit": 2, "total_pages": 2}
    assert (await owner.get(f"{B}?limit=500"))[1]["pagination"]["limit"] == 100
    status, body = await owner.get(f"{B}?page=9999&limit=abc")
    assert status == 200 and body["data"] == [] and body["pagination"]["limit"] == 20
    assert await owner.get(f"{B}?page=99999999999999999999") == (
        400, {"success": False, "error": "page must be at most 10000"})
    assert [b["id"] for b in (await owner.get(f"{B}?status=cancelled"))[1]["data"]] == [ids[1]]
    assert [b["id"] for b in (await owner.get(f"{B}?status=active"))[1]["data"]] == [ids[0]]
    assert await owner.get(f"{B}?status=picked_up") == (
        400, {"success": False, "error": "invalid status"})

    body = (await runner.get(B))[1]
    assert [b["id"] for b in body["data"]] == [ids[0]] and body["pagination"]["total"] == 1
    assert (await runner.get(f"{B}?status=completed"))[1]["data"] == []

    shop = await new_client("shop")
    assert (await shop.get(B))[1] == {"success": True, "data": [], "pagination": {
        "total": 0, "page": 1, "limit": 20, "total_pages": 0}}
    assert (await admin.get(B))[1]["data"] == []

    status, body = await admin.get("/api/v1/admin/bookings?limit=500")
    assert status == 200 and body["pagination"]["limit"] == 20
    assert body["pagination"]["total"] >= 3
    status, body = await admin.get("/api/v1/admin/bookings?status=cancelled&limit=100")
    assert ids[1] in [b["id"] for b in body["data"]]
    assert all(b["status"] == "cancelled" for b in body["data"])
    assert await owner.get("/api/v1/admin/bookings") == (403, {"error": "insufficient permissions"})

    status, body = await admin.get("/api/v1/admin/stats/bookings")
    assert status == 200
    counts = platform.sql("SELECT status, count(*)::int AS n FROM bookings GROUP BY status")
    assert body["data"] == {
        "total_bookings": sum(c["n"] for c in counts),
        "by_status": {s: next((c["n"] for c in counts if c["status"] == s), 0)
                      for s in rules.STATUSES}}


async def test_runner_open_jobs_nearest_first_when_online(platform, new_client):
    owner, runner = await new_client("owner"), await new_client("runner")
    # Around Kota Kinabalu, far from every other test's bookings.
    kk = (5.9804, 116.0735)
    far = await book(owner, pickup=(6.10, 116.20), dropoff=kk)
    near = await book(owner, pickup=(5.981, 116.074), dropoff=kk)
    mid = await book(owner, pickup=(6.00, 116.10), dropoff=kk)
    taken = await book(owner, pickup=(5.9805, 116.0736), dropoff=kk)
    await (await new_client("runner")).post(f"{B}/{taken['id']}/accept")
    mine = {far["id"], near["id"], mid["id"], taken["id"]}

    async def open_jobs() -> list[str]:
        status, body = await runner.get(f"{B}?status=requested&limit=100")
        assert status == 200, body
        assert all(b["status"] == "requested" and "runner_id" not in b for b in body["data"])
        return [b["id"] for b in body["data"]]

    # Offline (no runner profile yet): newest first.
    assert [i for i in await open_jobs() if i in mine] == [mid["id"], near["id"], far["id"]]

    status, body = await runner.post("/api/v1/runners", {
        "full_name": "Ali Runner", "phone": "+60123456789", "vehicle_type": "car",
        "vehicle_plate": "SAB1234", "vehicle_model": "Myvi", "vehicle_year": 2021})
    assert status == 201, body
    status, body = await runner.post("/api/v1/runners/me/online",
                                     {"latitude": kk[0], "longitude": kk[1]})
    assert status == 200, body
    assert (await open_jobs())[:3] == [near["id"], mid["id"], far["id"]]

    assert (await runner.post("/api/v1/runners/me/offline"))[0] == 200
    assert [i for i in await open_jobs() if i in mine] == [mid["id"], near["id"], far["id"]]
    # Without the status filter a runner sees only their own bookings.
    assert (await runner.get(B))[1]["data"] == []


# ---------------------------------------------------------------- concurrency

async def test_two_runners_accepting_at_once_one_wins(platform, new_client):
    owner = await new_client("owner")
    r1, r2 = await new_client("runner"), await new_client("runner")
    for _ in range(3):
        data = await book(owner)
        path = f"{B}/{data['id']}/accept"
        results = await asyncio.gather(r1.post(path), r2.post(path))
        statuses = sorted(s for s, _ in results)
        assert statuses[0] == 200 and statuses[1] in (409, 422), results
        winner = r1 if results[0][0] == 200 else r2
        loser_body = max(results, key=lambda r: r[0])[1]
        assert loser_body in (
            {"success": False, "error": "booking was modified by another transaction",
             "detail": ""},
            {"success": False, "error": "cannot transition from 'accepted' to 'accepted'",
             "detail": ""})
        rows = platform.sql("SELECT runner_id::text, version FROM bookings WHERE id = %s",
                            (data["id"],))
        assert rows == [{"runner_id": winner.user["id"], "version": 2}]
        await platform.wait_event("booking.events", "booking.accepted", booking_id=data["id"])
        assert len(await booking_events(platform, data["id"], "booking.accepted")) == 1


async def test_stale_write_is_a_conflict(platform, new_client):
    """A writer holding an old version of a booking whose status is unchanged loses with 409
    (the HTTP race above can only produce it by chance)."""
    owner, runner = await new_client("owner"), await new_client("runner")
    data = await book(owner)
    database = Database(platform.database_url, maxsize=1)
    try:
        async with database.connect() as conn:
            stale = await store.get_booking(conn, data["id"])
        await runner.post(f"{B}/{data['id']}/accept")
        await runner.post(f"{B}/{data['id']}/decline", {"reason": "too_far"})
        with pytest.raises(store.BookingConflict):
            async with database.transaction() as conn:
                await store.commit_transition(conn, stale, rules.accept(stale, str(uuid.uuid4()), _now()),
                                              None)
        await runner.post(f"{B}/{data['id']}/accept")
        with pytest.raises(rules.InvalidTransition, match="from 'accepted' to 'accepted'"):
            async with database.transaction() as conn:
                await store.commit_transition(conn, stale, rules.accept(stale, str(uuid.uuid4()), _now()),
                                              None)
    finally:
        await database.close()


def _now():
    from datetime import UTC, datetime
    return datetime.now(UTC)


# ---------------------------------------------------------------- payment saga

async def test_pickup_needs_a_held_escrow(platform, new_client, admin):
    """No pickup of a pet nobody paid for, nor of one whose payment was refunded."""
    owner, runner = await new_client("owner"), await new_client("runner")
    data = await book(owner)
    path = f"{B}/{data['id']}"
    assert (await runner.post(f"{path}/accept"))[0] == 200
    status, body = await runner.post(f"{path}/pickup")
    assert (status, body["error"]) == (422, "escrow not held"), body
    payment = await pay(owner, data["id"])
    status, body = await admin.post(f"/api/v1/payments/{payment['id']}/refund",
                                    {"reason": "card dispute"})
    assert status == 200 and body["data"]["escrow_status"] == "refunded", body
    assert await runner.post(f"{path}/pickup") == (422, {
        "success": False, "error": "escrow not held",
        "detail": "the payment for this booking is 'refunded', not held in escrow"})
    assert (await owner.get(path))[1]["data"]["status"] == "accepted"


# ---------------------------------------------------------------- pets

async def test_pets_crud(platform, new_client):
    owner, other = await new_client("owner"), await new_client("owner")
    P = "/api/v1/pets"
    status, body = await owner.post(P, {"name": "Milo", "pet_type": "cat", "breed": "Persian",
                                        "weight_kg": 4.5, "age_months": 24,
                                        "allergies": "chicken"})
    assert status == 201, body
    pet = body["data"]
    assert pet["owner_id"] == owner.user["id"] and pet["status"] == "active"
    assert pet["weight_kg"] == 4.5 and pet["allergies"] == "chicken"
    assert "notes" not in pet and "photo_url" not in pet
    assert list(pet)[:7] == ["id", "owner_id", "name", "pet_type", "breed", "weight_kg",
                             "age_months"]
    status, body = await owner.post(P, {"pet_type": "dog"})
    assert status == 400 and "'Name' failed on the 'required' tag" in body["error"]
    second = (await owner.post(P, {"name": "Rex", "pet_type": "dog"}))[1]["data"]

    assert [p["id"] for p in (await owner.get(P))[1]["data"]] == [second["id"], pet["id"]]
    assert (await owner.get(f"{P}/{pet['id']}"))[1]["data"] == pet
    assert await other.get(f"{P}/{pet['id']}") == (
        403, {"success": False, "error": "you do not own this pet profile", "detail": ""})
    missing = str(uuid.uuid4())
    assert await owner.get(f"{P}/{missing}") == (404, {
        "success": False, "error": "Pet not found", "detail": f"Pet with id '{missing}' was not found"})
    assert await owner.get(f"{P}/xyz") == (400, {"success": False, "error": "invalid pet ID"})

    status, body = await owner.put(f"{P}/{pet['id']}", {"name": "Milo II", "breed": "",
                                                        "weight_kg": 0, "notes": "shy"})
    assert status == 200, body
    assert (body["data"]["name"], body["data"]["breed"], body["data"]["weight_kg"],
            body["data"]["notes"]) == ("Milo II", "Persian", 4.5, "shy")
    assert platform.sql("SELECT version FROM pets WHERE id = %s", (pet["id"],)) == [
        {"version": 2}]
    assert (await other.put(f"{P}/{pet['id']}", {"name": "x"}))[0] == 403

    assert (await other.delete(f"{P}/{pet['id']}"))[0] == 403
    assert await owner.delete(f"{P}/{pet['id']}") == (
        200, {"success": True, "data": {"message": "pet profile archived"}})
    assert [p["id"] for p in (await owner.get(P))[1]["data"]] == [second["id"]]
    assert (await owner.get(f"{P}/{pet['id']}"))[1]["data"]["status"] == "archived"
    runner = await new_client("runner")
    assert await runner.get(P) == (403, {"error": "insufficient permissions"})


async def test_escrow_released_event_does_not_complete_a_delivered_booking(platform,
                                                                          new_client):
    """Money follows the booking, not the other way round: a (stray or replayed)
    `payment.escrow_released` leaves a delivered booking waiting for its owner."""
    owner, runner = await new_client("owner"), await new_client("runner")
    data = await book(owner)
    bid, path = data["id"], f"{B}/{data['id']}"
    await pay(owner, bid)
    for step in ("accept", "pickup", "deliver"):
        assert (await runner.post(f"{path}/{step}"))[0] == 200
    released = new_event("service-payment", "payment.escrow_released", {
        "payment_id": str(uuid.uuid4()), "booking_id": bid, "runner_id": runner.user["id"],
        "owner_id": owner.user["id"]})
    await platform.produce("payment.events", bid, released.to_json())

    async def notified():  # the notification agent consumes the same partition
        return platform.sql("SELECT 1 FROM processed_events WHERE event_id = %s",
                            (released.id,))
    await wait_until(notified, 30, what="stray release consumed")
    assert (await owner.get(path))[1]["data"]["status"] == "delivered"
    status, body = await owner.post(f"{path}/confirm")
    assert status == 200 and body["data"]["status"] == "completed", body
