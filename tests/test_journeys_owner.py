"""Owner-side client journeys through the gateway, call by call, with the bodies the existing
clients send (reference §8.1 web-landing, §8.2 app-mobile, §8.3 app-mobile-ios) and asserting
every field those clients read: key names, types, RFC 3339 `Z` times, integer cents, envelope
and pagination shapes, status codes and error texts (or DESIGN.md's fixes)."""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
import uuid
from typing import Any

import aiohttp
import jwt

from tests.conftest import Client
from tests.platform import JWT_SECRET, Platform, days_ahead, wait_until
from tests.test_identity import reset_token_from_log

RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
VEHICLE = {"vehicle_type": "car", "vehicle_plate": "WXY 1234", "vehicle_model": "Perodua Myvi",
           "vehicle_year": 2021, "air_conditioned": True}
BOOKING_KEYS = {"id", "booking_number", "owner_id", "status", "pet_spec", "crate_requirement",
                "pickup_address", "dropoff_address", "estimated_price_cents", "currency",
                "version", "created_at", "updated_at"}
PAYMENT_KEYS = {"id", "booking_id", "owner_id", "escrow_status", "amount_cents",
                "platform_fee_cents", "runner_payout_cents", "currency", "version", "created_at",
                "updated_at"}
USER_KEYS = {"id", "email", "phone", "full_name", "role", "is_verified", "created_at"}


# ---------------------------------------------------------------- helpers

def is_time(value: Any) -> bool:
    return isinstance(value, str) and bool(RFC3339_Z.match(value))


def is_uuid(value: Any) -> bool:
    return isinstance(value, str) and bool(UUID_RE.match(value))


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def spot() -> tuple[float, float]:
    """A point somewhere in Peninsular Malaysia nobody else in the session uses."""
    return round(random.uniform(2.0, 6.0), 5), round(random.uniform(100.5, 103.0), 5)


def address(point: tuple[float, float], line1: str) -> dict[str, Any]:
    return {"line1": line1, "line2": "", "city": "Kuala Lumpur", "state": "WP",
            "postal_code": "50450", "country": "MY", "latitude": point[0],
            "longitude": point[1]}


def web_landing_booking(pickup: tuple[float, float]) -> dict[str, Any]:
    """The body web-landing's booking form posts (src/lib/api.ts)."""
    dropoff = (pickup[0] + 0.01, pickup[1] + 0.02)
    return {"pet_spec": {"pet_type": "cat", "name": "Milo", "weight_kg": 4, "breed": "Persian",
                         "special_needs": "shy"},
            "pickup_address": address(pickup, "1 Jalan Ampang"),
            "dropoff_address": address(dropoff, "2 Jalan Tun Razak"),
            "notes": "ring the bell"}


def app_mobile_booking(pickup: tuple[float, float]) -> dict[str, Any]:
    """app-mobile's BookingRequest.toJson(): full pet_spec, Dart `toIso8601String()` times."""
    dropoff = (pickup[0] - 0.02, pickup[1] + 0.01)
    return {"pet_spec": {"pet_type": "dog", "breed": "Beagle", "name": "Rex", "weight_kg": 12.5,
                         "age_months": 30,
                         "vaccinations": [{"vaccine_name": "Rabies",
                                           "date_given": "2026-01-10T00:00:00.000",
                                           "expires_at": "2027-01-10T00:00:00.000",
                                           "vet_name": "Dr Tan", "verified": True}],
                         "special_needs": "", "photo_url": "https://img.kilat.test/rex.jpg"},
            "pickup_address": address(pickup, "3 Jalan Bukit Bintang"),
            "dropoff_address": address(dropoff, "4 Jalan Sultan Ismail"),
            "scheduled_at": days_ahead(23, 10, 30)[0],
            "notes": ""}


def check_booking(b: dict[str, Any]) -> None:
    assert BOOKING_KEYS <= set(b), set(b) ^ BOOKING_KEYS
    assert is_uuid(b["id"]) and is_uuid(b["owner_id"])
    assert re.match(r"^BK-[ABCDEFGHJKLMNPQRSTUVWXYZ23456789]{6}$", b["booking_number"])
    assert is_int(b["estimated_price_cents"]) and b["estimated_price_cents"] > 0
    assert b["currency"] == "MYR" and is_int(b["version"])
    assert is_time(b["created_at"]) and is_time(b["updated_at"])
    assert set(b["pet_spec"]) == {"pet_type", "breed", "name", "weight_kg", "age_months",
                                  "vaccinations", "special_needs", "photo_url"}
    assert isinstance(b["pet_spec"]["vaccinations"], list)
    assert set(b["crate_requirement"]) == {"minimum_size", "needs_ventilation",
                                           "needs_temp_control", "minimum_weight_capacity"}
    for side in ("pickup_address", "dropoff_address"):
        assert set(b[side]) == {"line1", "line2", "city", "state", "postal_code", "country",
                                "latitude", "longitude"}
    for key in ("scheduled_at", "picked_up_at", "delivered_at", "cancelled_at"):
        assert key not in b or is_time(b[key])
    if "final_price_cents" in b:
        assert is_int(b["final_price_cents"])


def check_payment(p: dict[str, Any]) -> None:
    assert PAYMENT_KEYS <= set(p), PAYMENT_KEYS - set(p)
    for key in ("amount_cents", "platform_fee_cents", "runner_payout_cents", "version"):
        assert is_int(p[key]), key
    assert p["platform_fee_cents"] + p["runner_payout_cents"] == p["amount_cents"]
    for key in ("escrow_held_at", "escrow_released_at", "refunded_at", "created_at",
                "updated_at"):
        assert key not in p or p[key] is None or is_time(p[key]), key


def check_page(body: dict[str, Any], page: int, limit: int) -> list[dict[str, Any]]:
    assert body["success"] is True and isinstance(body["data"], list)
    pg = body["pagination"]
    assert set(pg) == {"total", "page", "limit", "total_pages"}
    assert all(is_int(v) for v in pg.values())
    assert (pg["page"], pg["limit"]) == (page, limit)
    assert pg["total_pages"] == -(-pg["total"] // limit)
    return body["data"]


def check_notification(n: dict[str, Any]) -> None:
    """What web-landing's page and app-mobile's NotificationModel.fromJson read."""
    assert is_uuid(n["id"]) and isinstance(n["title"], str) and isinstance(n["body"], str)
    assert isinstance(n["is_read"], bool)
    assert is_time(n["created_at"]) and is_time(n["updated_at"])
    assert isinstance(n["type"], str) and n["type"] == n["event_type"]
    assert isinstance(n["channels_sent"], list) and isinstance(n["channels_failed"], list)


async def online_runner(new_client, point: tuple[float, float]) -> Client:
    runner = await new_client("runner")
    status, body = await runner.post("/api/v1/runners", VEHICLE)
    assert status == 201, body
    status, body = await runner.post("/api/v1/runners/me/online",
                                     {"latitude": point[0], "longitude": point[1]})
    assert (status, body) == (200, {"success": True, "data": {"message": "runner is now online"}})
    return runner


def ws_url(base: str, booking_id: str, token: str) -> str:
    return base.replace("http", "ws", 1) + f"/ws/tracking/{booking_id}?token={token}"


async def next_frame(ws: aiohttp.ClientWebSocketResponse, type_: str) -> dict[str, Any]:
    """The next frame of a type; each text frame must be ONE JSON document (JSON.parse)."""
    while True:
        msg = await asyncio.wait_for(ws.receive(), 60)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        frame = json.loads(msg.data)
        if frame.get("type") == type_:
            return frame


# ---------------------------------------------------------------- §1 cross-cutting

async def test_cors_security_headers_and_middleware_errors(platform: Platform, http,
                                                           new_client) -> None:
    url = platform.base_url + "/api/v1/bookings"
    for origin in ("http://localhost:3000", "http://localhost:3001", "http://localhost:3002"):
        async with http.options(url, headers={
                "Origin": origin, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type"}) as resp:
            assert resp.status in (200, 204)
            assert resp.headers.getall("Access-Control-Allow-Origin") == [origin]
            assert resp.headers.get("Access-Control-Allow-Credentials") == "true"
            assert "POST" in resp.headers["Access-Control-Allow-Methods"]
            assert "authorization" in resp.headers["Access-Control-Allow-Headers"].lower()
    owner = await new_client("owner")
    async with http.get(url, headers={"Origin": "http://localhost:3000",
                                      "Authorization": f"Bearer {owner.token}",
                                      "X-Request-ID": "req-123"}) as resp:
        assert resp.status == 200
        assert resp.headers.getall("Access-Control-Allow-Origin") == ["http://localhost:3000"]
        assert resp.headers["X-Request-ID"] == "req-123"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert "X-Request-ID" in resp.headers.get("Access-Control-Expose-Headers", "")
    # Middleware errors have no `success` key.
    c = Client(http, platform.base_url)
    assert await c.get("/api/v1/bookings") == (
        401, {"error": "authorization header is required"})
    assert await c.get("/api/v1/bookings", headers={"Authorization": "Token x"}) == (
        401, {"error": "authorization header must be Bearer {token}"})
    assert await c.get("/api/v1/bookings", token="garbage") == (
        401, {"error": "invalid or expired token"})
    # A refresh token is not an access token.
    assert await c.get("/api/v1/auth/profile", token=owner.refresh_token) == (
        401, {"error": "invalid or expired token"})
    runner = await new_client("runner")
    assert await runner.post("/api/v1/bookings", web_landing_booking(spot())) == (
        403, {"error": "insufficient permissions"})
    assert await c.get("/api/v1/nope") == (404, {"error": "route not found", "success": False})


# ---------------------------------------------------------------- §8.1 web-landing

async def test_web_landing_owner_journey(platform: Platform, http, new_client) -> None:
    # Register, then log in as the login page does.
    email = f"web-{uuid.uuid4().hex[:10]}@kilat.test"
    await new_client("owner", email=email)
    web_client = Client(http, platform.base_url)
    status, body = await web_client.post("/api/v1/auth/login",
                                         {"email": email, "password": "Secret123!"})
    assert status == 200, body
    assert set(body["data"]) == {"access_token", "refresh_token", "user"}
    assert USER_KEYS <= set(body["data"]["user"]) and body["data"]["user"]["role"] == "owner"
    assert is_time(body["data"]["user"]["created_at"])
    owner = web_client
    owner.token = body["data"]["access_token"]
    owner_id = body["data"]["user"]["id"]

    # Book.
    pickup = spot()
    status, body = await owner.post("/api/v1/bookings", web_landing_booking(pickup))
    assert status == 201, body
    assert body["success"] is True
    booking = body["data"]
    check_booking(booking)
    assert booking["status"] == "requested" and booking["owner_id"] == owner_id
    assert booking["pet_spec"]["special_needs"] == "shy" and booking["notes"] == "ring the bell"
    assert "runner_id" not in booking
    bid, path = booking["id"], f"/api/v1/bookings/{booking['id']}"

    # The dashboard list (?page&limit=10) and the detail page.
    status, body = await owner.get("/api/v1/bookings?page=1&limit=10")
    assert status == 200, body
    items = check_page(body, 1, 10)
    assert [b["id"] for b in items] == [bid]
    check_booking(items[0])
    status, body = await owner.get(path)
    assert status == 200 and body["data"]["id"] == bid

    # "Pay" shows while requested: no payment yet → 404 envelope, then initiate.
    status, body = await owner.get(f"/api/v1/payments/booking/{bid}")
    assert (status, body) == (404, {"success": False, "error": "Payment not found",
                                    "detail": f"Payment with id '{bid}' was not found"})
    status, body = await owner.post("/api/v1/payments/initiate", {
        "booking_id": bid, "amount_cents": booking["estimated_price_cents"], "currency": "MYR",
        "customer_email": email})
    assert status == 201, body
    payment = body["data"]
    check_payment(payment)
    assert payment["escrow_status"] == "held" and is_time(payment["escrow_held_at"])
    assert payment["amount_cents"] == booking["estimated_price_cents"]
    status, body = await owner.get(f"/api/v1/payments/booking/{bid}")
    assert status == 200 and body["data"]["id"] == payment["id"]
    assert body["data"]["escrow_status"] == "held"
    status, body = await owner.get(f"/api/v1/payments/{payment['id']}")
    assert status == 200 and body["data"]["booking_id"] == bid

    # Nearby runners (radius_km=10), reading the fields the runner cards show.
    runner = await online_runner(new_client, (pickup[0] + 0.01, pickup[1]))
    status, body = await owner.get(f"/api/v1/runners/nearby?latitude={pickup[0]}"
                                   f"&longitude={pickup[1]}&radius_km=10")
    assert status == 200, body
    assert isinstance(body["data"], list)
    (card,) = [r for r in body["data"] if r["user_id"] == runner.user["id"]]
    # 1.1 km away; shown to 0.1 km, measured to a stand-in point (DESIGN 14).
    assert is_num(card["distance_km"]) and 0.7 <= card["distance_km"] <= 1.5
    assert is_num(card["rating"]) and is_int(card["total_trips"])
    assert card["vehicle_type"] == "car" and card["vehicle_model"] == "Perodua Myvi"
    assert card["air_conditioned"] is True and card["full_name"] == "Test"  # first name only
    assert "phone" not in card and "vehicle_plate" not in card
    assert card["session_status"] == "active" and is_time(card["created_at"])

    # Pet shops: list, by category, detail.
    shop = await new_client("shop")
    status, body = await shop.post("/api/v1/petshops", {
        "name": "Journey Grooming", "address": "5 Jalan Telawi", "latitude": pickup[0],
        "longitude": pickup[1], "phone": "+60312345678", "email": "groom@kilat.test",
        "category": "grooming", "services": ["bath", "trim"], "opening_hours": "9-6",
        "description": "Nice"})
    assert status == 201, body
    shop_id = body["data"]["id"]
    for query in ("", "?category=grooming"):
        status, body = await owner.get(f"/api/v1/petshops{query}")
        assert status == 200 and isinstance(body["data"], list), body
        assert all(s["category"] == "grooming" for s in body["data"]) or not query
    status, body = await owner.get(f"/api/v1/petshops/{shop_id}")
    assert status == 200, body
    for key in ("id", "name", "address", "latitude", "longitude", "phone", "email", "category",
                "services", "rating", "opening_hours", "description", "created_at"):
        assert key in body["data"], key
    assert body["data"]["services"] == ["bath", "trim"] and is_num(body["data"]["rating"])
    status, body = await owner.get(f"/api/v1/petshops/{uuid.uuid4()}")
    assert (status, body) == (404, {"success": False, "error": "not found"})  # as the original

    # The runner takes the job; the owner follows it live ("track" when accepted).
    status, body = await runner.post(f"{path}/accept")
    assert status == 200, body
    assert body["data"]["status"] == "accepted" and body["data"]["runner_id"] == runner.user["id"]
    await wait_until(lambda: _has_track(owner, bid), 60, what="track created")
    # The browser sends its page origin on the upgrade; any origin is accepted.
    async with http.ws_connect(ws_url(platform.base_url, bid, owner.token),
                               origin="http://localhost:3000") as ws:
        async def send_fix():
            point = (pickup[0] + 0.001, pickup[1] + 0.001)
            status, body = await runner.post("/api/v1/runners/me/location",
                                             {"latitude": point[0], "longitude": point[1],
                                              "speed_kmh": 30, "heading_degrees": 90})
            assert status == 200, body
        await send_fix()
        frame = await next_frame(ws, "location_update")
        data = frame["data"]
        assert set(data) == {"booking_id", "runner_id", "latitude", "longitude", "speed_kmh",
                             "heading_degrees", "timestamp", "eta_minutes",
                             "distance_remaining_km"}
        assert is_num(data["eta_minutes"]) and is_num(data["distance_remaining_km"])
        assert data["booking_id"] == bid and data["runner_id"] == runner.user["id"]
        assert is_num(data["latitude"]) and is_time(data["timestamp"])
        # web-landing's socket reads the location flat from the frame (TrackingUpdate).
        for key in ("booking_id", "runner_id", "latitude", "longitude", "speed_kmh",
                    "heading_degrees", "timestamp", "eta_minutes"):
            assert frame[key] == data[key], key

        # Chat: REST send → flat WS frame.
        status, body = await owner.post(f"/api/v1/chat/{bid}/messages",
                                        {"message_type": "text", "content": "hi"})
        assert status == 201, body
        msg = body["data"]
        assert set(msg) == {"id", "booking_id", "sender_id", "sender_role", "message_type",
                            "content", "created_at"}
        assert msg["sender_role"] == "owner" and is_time(msg["created_at"])
        frame = await next_frame(ws, "chat_message")
        assert frame == {"type": "chat_message", "booking_id": bid, "message_id": msg["id"],
                         "sender_id": owner_id, "sender_role": "owner", "message_type": "text",
                         "content": "hi", "created_at": msg["created_at"]}

    # Tracking read model (the fix is stored as a waypoint) and route.
    async def stored():
        s, b = await owner.get(f"/api/v1/tracking/{bid}")
        return b["data"] if s == 200 and b["data"]["waypoints"] else None

    track = await wait_until(stored, 30, what="waypoint stored")
    (wp,) = track["waypoints"]
    assert set(wp) == {"id", "latitude", "longitude", "speed_kmh", "heading_degrees",
                       "recorded_at"}
    assert wp["speed_kmh"] == 30 and wp["heading_degrees"] == 90 and is_time(wp["recorded_at"])
    assert is_num(track["total_distance_km"]) and track["runner_id"] == runner.user["id"]
    for key in ("id", "booking_id", "runner_id", "status", "total_distance_km", "started_at",
                "waypoints"):
        assert key in track, key
    assert track["status"] == "active" and is_time(track["started_at"])
    assert isinstance(track["waypoints"], list)
    async with http.get(f"{platform.base_url}/api/v1/tracking/{bid}/route",
                        headers={"Authorization": f"Bearer {owner.token}"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/geo+json")
        geo = json.loads(await resp.text())
        assert geo["type"] == "LineString"
        assert [[round(c, 5) for c in pt] for pt in geo["coordinates"]] == [
            [round(wp["longitude"], 5), round(wp["latitude"], 5)]]

    # Chat history (paginated, default limit 50).
    status, body = await owner.get(f"/api/v1/chat/{bid}/messages")
    assert status == 200, body
    assert [m["content"] for m in check_page(body, 1, 50)] == ["hi"]

    # Share the trip; anyone with the link reads it.
    status, body = await owner.post(f"/api/v1/tracking/{bid}/share")
    assert status == 201, body
    share = body["data"]
    assert set(share) == {"id", "booking_id", "share_token", "share_url", "expires_at"}
    assert re.match(r"^[0-9a-f]{32}$", share["share_token"])
    assert share["share_url"] == f"/api/v1/tracking/shared/{share['share_token']}"
    status, body = await Client(http, platform.base_url).get(share["share_url"])
    assert status == 200, body
    assert set(body["data"]) == {"booking_id", "status", "waypoints", "expires_at"}
    assert body["data"]["status"] == "active" and is_time(body["data"]["expires_at"])
    assert body["data"]["waypoints"] == [{k: wp[k] for k in (
        "latitude", "longitude", "speed_kmh", "heading_degrees", "recorded_at")}]
    assert await Client(http, platform.base_url).get("/api/v1/tracking/shared/" + "0" * 32) == (
        404, {"error": "share link not found", "success": False})

    # Pickup, deliver → the escrow waits for the owner; "Confirm delivery" (the web client's
    # button for delivered bookings) completes the booking and releases the escrow.
    for step in ("pickup", "deliver"):
        status, body = await runner.post(f"{path}/{step}")
        assert status == 200, body
    assert body["data"]["status"] == "delivered"
    status, body = await owner.get(f"/api/v1/payments/booking/{bid}")
    assert body["data"]["escrow_status"] == "held"
    status, body = await owner.post(f"{path}/confirm")
    assert status == 200, body
    done = body["data"]
    check_booking(done)
    assert done["status"] == "completed"
    assert done["final_price_cents"] == done["estimated_price_cents"]
    assert await owner.post(f"{path}/confirm") == (422, {
        "success": False, "error": "cannot transition from 'completed' to 'completed'",
        "detail": ""})

    async def released():
        s, b = await owner.get(f"/api/v1/payments/booking/{bid}")
        return b["data"]["escrow_status"] == "released"

    await wait_until(released, 60, what="escrow released after the owner's confirm")
    status, body = await owner.get(f"/api/v1/payments/booking/{bid}")
    assert body["data"]["escrow_status"] == "released"
    # Paid before any runner accepted: the payout still goes to the runner who delivered.
    assert body["data"]["runner_id"] == runner.user["id"]
    assert is_time(body["data"]["escrow_released_at"])

    # Notifications page: list and mark read.
    async def some_notifications():
        s, b = await owner.get("/api/v1/notifications?page=1&limit=20")
        return b if s == 200 and len(b["data"]) >= 3 else None

    body = await wait_until(some_notifications, 60, what="owner notifications")
    items = check_page(body, 1, 20)
    for n in items:
        check_notification(n)
    nid = items[0]["id"]
    assert await owner.put(f"/api/v1/notifications/{nid}/read") == (
        200, {"success": True, "data": {"message": "notification marked as read"}})
    status, body = await owner.get(f"/api/v1/notifications/{nid}")
    assert status == 200 and body["data"]["is_read"] is True

    # Cancel flow on a second booking (cancel shows while requested/accepted).
    status, body = await owner.post("/api/v1/bookings", web_landing_booking(spot()))
    assert status == 201
    second = body["data"]["id"]
    status, body = await owner.post(f"/api/v1/bookings/{second}/cancel",
                                    {"reason": "changed my mind"})
    assert status == 200, body
    check_booking(body["data"])
    assert body["data"]["status"] == "cancelled" and is_time(body["data"]["cancelled_at"])
    assert await owner.post(f"/api/v1/bookings/{second}/cancel", {"reason": "again"}) == (
        422, {"success": False, "error": "cannot transition from 'cancelled' to 'cancelled'",
              "detail": ""})
    # Unknown / malformed ids.
    missing = str(uuid.uuid4())
    assert await owner.get(f"/api/v1/bookings/{missing}") == (404, {
        "success": False, "error": "Booking not found",
        "detail": f"Booking with id '{missing}' was not found"})
    assert await owner.get("/api/v1/bookings/not-a-uuid") == (
        400, {"success": False, "error": "invalid booking ID"})

    # Reviews of the runner after the completed trip.
    status, body = await owner.post("/api/v1/reviews", {
        "booking_id": bid, "reviewee_id": runner.user["id"], "reviewee_type": "runner",
        "rating": 5, "comment": "great", "photo_urls": []})
    assert status == 201, body
    review = body["data"]
    assert set(review) == {"id", "booking_id", "reviewer_id", "reviewee_id", "reviewee_type",
                           "rating", "comment", "photo_urls", "created_at"}
    assert review["rating"] == 5 and review["photo_urls"] == [] and is_time(review["created_at"])
    status, body = await owner.get("/api/v1/reviews/me?page=1&limit=20")
    assert status == 200 and [r["id"] for r in check_page(body, 1, 20)] == [review["id"]]
    status, body = await owner.get(f"/api/v1/reviews/runner/{runner.user['id']}")
    assert status == 200 and [r["id"] for r in check_page(body, 1, 20)] == [review["id"]]
    status, body = await Client(http, platform.base_url).get(
        f"/api/v1/reviews/rating/runner/{runner.user['id']}")
    assert (status, body) == (200, {"success": True, "data": {"average_rating": 5.0,
                                                              "total_reviews": 1}})
    status, body = await owner.post("/api/v1/reviews", {
        "booking_id": bid, "reviewee_id": runner.user["id"], "reviewee_type": "runner",
        "rating": 4})
    assert status == 409 and body["success"] is False, body
    status, body = await owner.post("/api/v1/reviews", {
        "booking_id": bid, "reviewee_id": runner.user["id"], "reviewee_type": "runner",
        "rating": 6})
    assert status == 400 and body["success"] is False, body


async def _has_track(owner: Client, bid: str) -> bool:
    status, _ = await owner.get(f"/api/v1/tracking/{bid}")
    return status == 200


# ---------------------------------------------------------------- §8.2 app-mobile

async def test_app_mobile_owner_journey(platform: Platform, http, new_client) -> None:
    owner = await new_client("owner")
    # Profile read and edit.
    status, body = await owner.get("/api/v1/auth/profile")
    assert status == 200 and USER_KEYS <= set(body["data"]), body
    status, body = await owner.put("/api/v1/auth/profile", {
        "full_name": "Aisyah", "phone": "+60198765432", "avatar_url": ""})
    assert status == 200 and body["data"]["full_name"] == "Aisyah", body
    assert body["data"]["phone"] == "+60198765432"

    # Book with the full pet_spec and a local (offset-less) scheduled_at.
    pickup = spot()
    req = app_mobile_booking(pickup)
    status, body = await owner.post("/api/v1/bookings", req)
    assert status == 201, body
    booking = body["data"]
    check_booking(booking)
    spec = booking["pet_spec"]
    assert spec["age_months"] == 30 and spec["photo_url"] == req["pet_spec"]["photo_url"]
    assert spec["weight_kg"] == 12.5 and spec["vaccinations"][0]["vaccine_name"] == "Rabies"
    # 10:30 Malaysia time (UTC+8) is 02:30Z.
    assert booking["scheduled_at"] == days_ahead(23, 10, 30)[1]
    assert booking["crate_requirement"]["minimum_size"] == "medium"
    bid, path = booking["id"], f"/api/v1/bookings/{booking['id']}"

    status, body = await owner.get("/api/v1/bookings?page=1&limit=20")
    assert status == 200 and [b["id"] for b in check_page(body, 1, 20)] == [bid]

    # Pay, read the payment both ways.
    status, body = await owner.post("/api/v1/payments/initiate", {
        "booking_id": bid, "amount_cents": booking["estimated_price_cents"], "currency": "MYR",
        "customer_email": "x@kilat.test"})
    assert status == 201, body
    check_payment(body["data"])
    pid = body["data"]["id"]
    assert (await owner.get(f"/api/v1/payments/{pid}"))[1]["data"]["escrow_status"] == "held"
    assert (await owner.get(f"/api/v1/payments/booking/{bid}"))[1]["data"]["id"] == pid

    # Nearby: shops (default 10 km) and runners (default radius).
    shop = await new_client("shop")
    status, body = await shop.post("/api/v1/petshops", {
        "name": "Mobile Vet", "address": "6 Jalan", "latitude": pickup[0] + 0.02,
        "longitude": pickup[1], "category": "vet"})
    assert status == 201, body
    status, body = await owner.get(f"/api/v1/petshops/nearby?latitude={pickup[0]}"
                                   f"&longitude={pickup[1]}")
    assert status == 200 and body["data"][0]["id"] == body["data"][0]["id"]
    assert "Mobile Vet" in [s["name"] for s in body["data"]]
    runner = await online_runner(new_client, (pickup[0] + 0.005, pickup[1]))
    status, body = await owner.get(f"/api/v1/runners/nearby?latitude={pickup[0]}"
                                   f"&longitude={pickup[1]}")
    assert status == 200 and runner.user["id"] in [r["user_id"] for r in body["data"]]
    assert await owner.get("/api/v1/runners/nearby?latitude=abc&longitude=1") == (
        400, {"success": False, "error": "invalid latitude"})
    assert await owner.get("/api/v1/runners/nearby?longitude=1") == (
        400, {"success": False, "error": "invalid latitude"})
    assert await owner.get("/api/v1/runners/nearby?latitude=3&longitude=x") == (
        400, {"success": False, "error": "invalid longitude"})
    assert await owner.get("/api/v1/runners/nearby?latitude=3&longitude=101&radius_km=x") == (
        400, {"success": False, "error": "invalid radius"})

    # Tracking once accepted.
    assert (await runner.post(f"{path}/accept"))[0] == 200
    await wait_until(lambda: _has_track(owner, bid), 60, what="track created")
    status, body = await owner.get(f"/api/v1/tracking/{bid}/route")
    assert status == 200 and body["type"] == "LineString"

    # Notifications: preferences (none stored yet: 404, as the app has always seen), fcm
    # token, list, read.
    status, body = await owner.get("/api/v1/notifications/preferences")
    assert (status, body["error"]) == (404, "NotificationPreference not found"), body
    assert await owner.put("/api/v1/notifications/preferences", {
        "enable_push": True, "enable_sms": False, "enable_email": False}) == (
        200, {"success": True, "data": {"message": "preferences updated"}})
    status, body = await owner.get("/api/v1/notifications/preferences")
    prefs = body["data"]
    assert status == 200 and prefs["user_id"] == owner.user["id"]
    assert all(isinstance(prefs[k], bool) for k in ("enable_push", "enable_sms", "enable_email"))
    assert await owner.post("/api/v1/notifications/fcm-token", {"token": "fcm-abc"}) == (
        200, {"success": True, "data": {"message": "FCM token registered"}})
    assert await owner.post("/api/v1/notifications/fcm-token", {}) == (
        400, {"success": False, "error": "token is required"})
    status, body = await owner.get("/api/v1/notifications/preferences")
    assert body["data"]["enable_push"] is True and body["data"]["fcm_token"] == "fcm-abc"

    async def notified():
        s, b = await owner.get("/api/v1/notifications?page=1&limit=20")
        return b if s == 200 and b["data"] else None

    body = await wait_until(notified, 60, what="notifications")
    for n in check_page(body, 1, 20):
        check_notification(n)

    # Cancel while accepted, with a reason; the held payment is refunded.
    status, body = await owner.post(f"{path}/cancel", {"reason": "vet appointment moved"})
    assert status == 200 and body["data"]["status"] == "cancelled", body

    async def refunded():
        s, b = await owner.get(f"/api/v1/payments/booking/{bid}")
        return b["data"] if b["data"]["escrow_status"] == "refunded" else None

    payment = await wait_until(refunded, 60, what="refund")
    assert payment["refund_reason"].startswith("booking cancelled: ")
    assert is_time(payment["refunded_at"])

    # Rebook clones the booking (not its scheduled time).
    status, body = await owner.post(f"{path}/rebook")
    assert status == 201, body
    check_booking(body["data"])
    assert body["data"]["id"] != bid and body["data"]["status"] == "requested"
    assert body["data"]["pet_spec"] == booking["pet_spec"] and "scheduled_at" not in body["data"]
    other = await new_client("owner")
    assert await other.post(f"{path}/rebook") == (
        403, {"success": False, "error": "booking does not belong to this user", "detail": ""})

    # Pets (backend paths).
    status, body = await owner.post("/api/v1/pets", {"name": "Rex", "pet_type": "dog",
                                                     "weight_kg": 12.5, "age_months": 30})
    assert status == 201, body
    pet = body["data"]
    for key in ("id", "owner_id", "name", "pet_type", "breed", "weight_kg", "age_months",
                "status", "created_at", "updated_at"):
        assert key in pet, key
    assert pet["status"] == "active" and pet["weight_kg"] == 12.5
    status, body = await owner.get("/api/v1/pets")
    assert status == 200 and [p["id"] for p in body["data"]] == [pet["id"]]

    # Log out: the refresh token is revoked.
    assert await owner.post("/api/v1/auth/logout") == (
        200, {"success": True, "data": {"message": "logged out successfully"}})
    status, body = await owner.post("/api/v1/auth/refresh",
                                    {"refresh_token": owner.refresh_token})
    assert status == 401 and body["success"] is False, body


async def test_payments_promos_subscriptions_referrals(platform: Platform, new_client,
                                                       new_admin) -> None:
    owner = await new_client("owner")
    code = f"JRN{uuid.uuid4().hex[:6].upper()}"
    status, body = await new_admin.post("/api/v1/promos", {
        "code": code, "discount_type": "percentage", "discount_value": 10,
        "min_amount_cents": 1000, "max_discount_cents": 500, "max_uses": 100,
        "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2030-01-01T00:00:00Z"})
    assert status == 201, body
    status, body = await owner.post("/api/v1/promos/validate",
                                    {"code": code, "amount_cents": 3000})
    assert (status, body) == (200, {"success": True, "data": {
        "valid": True, "code": code, "discount_cents": 300}})
    status, body = await owner.post("/api/v1/promos/validate",
                                    {"code": code, "amount_cents": 500})
    assert status == 200 and body["data"]["valid"] is False
    assert body["data"]["message"] == "minimum amount of 1000 cents required"
    status, body = await owner.post("/api/v1/promos/validate",
                                    {"code": "NOPE-" + code, "amount_cents": 3000})
    assert body["data"] == {"valid": False, "code": "NOPE-" + code, "discount_cents": 0,
                            "message": "promo code not found"}
    status, body = await owner.get("/api/v1/promos/active")
    assert status == 200 and code in [p["code"] for p in body["data"]]
    promo = next(p for p in body["data"] if p["code"] == code)
    assert set(promo) >= {"id", "code", "discount_type", "discount_value", "min_amount_cents",
                          "max_discount_cents", "max_uses", "current_uses", "valid_from",
                          "valid_until", "created_at"}

    status, body = await owner.get("/api/v1/subscriptions/plans")
    assert status == 200 and [p["plan"] for p in body["data"]] == ["basic", "premium"]
    status, body = await owner.post("/api/v1/subscriptions", {"plan": "basic"})
    assert status == 201, body
    sub = body["data"]
    assert set(sub) >= {"id", "user_id", "plan", "price_cents", "started_at", "expires_at",
                        "status", "auto_renew", "created_at"}
    assert (sub["plan"], sub["price_cents"], sub["status"], sub["auto_renew"]) == (
        "basic", 1990, "active", True)
    status, body = await owner.get("/api/v1/subscriptions/me")
    assert status == 200 and body["data"]["id"] == sub["id"]
    status, body = await owner.post("/api/v1/subscriptions/me/cancel")
    assert status == 200 and body["data"]["status"] == "cancelled"
    assert body["data"]["auto_renew"] is False

    status, body = await owner.get("/api/v1/referrals/code")
    assert status == 200 and re.match(r"^REF-", body["data"]["referral_code"]), body
    status, body = await owner.get("/api/v1/referrals/me")
    assert status == 200, body
    assert body["data"]["referrals"] == [] and body["data"]["total_referrals"] == 0


# ---------------------------------------------------------------- §8.3 app-mobile-ios

async def test_ios_owner_journey(platform: Platform, http, new_client) -> None:
    email = f"ios-{uuid.uuid4().hex[:10]}@kilat.test"
    owner = await new_client("owner", email=email)
    anon = Client(http, platform.base_url)

    # Forgot / reset password, then log in with the new one.
    async with http.post(platform.base_url + "/api/v1/auth/forgot-password",
                         json={"email": email}) as resp:
        assert resp.status == 202 and await resp.read() == b""
    async with http.post(platform.base_url + "/api/v1/auth/forgot-password",
                         json={"email": "nobody@kilat.test"}) as resp:
        assert resp.status == 202 and await resp.read() == b""
    token = await reset_token_from_log(platform, email)
    assert await anon.post("/api/v1/auth/reset-password",
                           {"token": token, "newPassword": "short"}) == (
        400, {"success": False, "error": "password must be at least 8 characters", "detail": ""})
    assert await anon.post("/api/v1/auth/reset-password",
                           {"token": token, "newPassword": "NewSecret456!"}) == (
        200, {"success": True, "data": {"message": "password reset successful"}})
    assert (await anon.post("/api/v1/auth/reset-password",
                            {"token": token, "newPassword": "NewSecret456!"}))[1]["error"] == (
        "token already used")
    status, body = await anon.post("/api/v1/auth/login",
                                   {"email": email, "password": "NewSecret456!"})
    assert status == 200, body
    owner.token, owner.refresh_token = body["data"]["access_token"], body["data"]["refresh_token"]

    # The refresh-on-401 flow: an expired access token → POST /auth/refresh → retry.
    now = int(time.time())
    expired = jwt.encode({"jti": str(uuid.uuid4()), "sub": owner.user["id"], "iat": now - 1000,
                          "exp": now - 100, "iss": "kilat-pet-runner",
                          "user_id": owner.user["id"], "email": email, "role": "owner",
                          "token_type": "access"}, JWT_SECRET, algorithm="HS256")
    assert await owner.get("/api/v1/auth/profile", token=expired) == (
        401, {"error": "invalid or expired token"})
    status, body = await anon.post("/api/v1/auth/refresh", {"refresh_token": owner.refresh_token})
    assert status == 200, body
    old_refresh = owner.refresh_token
    owner.token, owner.refresh_token = body["data"]["access_token"], body["data"]["refresh_token"]
    assert owner.refresh_token != old_refresh
    assert set(body["data"]) == {"access_token", "refresh_token", "user"}
    assert body["data"]["user"]["email"] == email
    status, body = await owner.get("/api/v1/auth/profile")
    assert status == 200 and body["data"]["email"] == email
    # Rotation revokes the old refresh token (DESIGN 5); presenting it again is a reuse, which
    # ends the whole session (DESIGN 13), so the app signs in again.
    status, body = await anon.post("/api/v1/auth/refresh", {"refresh_token": old_refresh})
    assert status == 401 and body["success"] is False

    async def session_ended() -> bool:
        return (await owner.get("/api/v1/auth/profile"))[0] == 401
    await wait_until(session_ended, 2, 0.05, what="the reused session ended")
    status, body = await anon.post("/api/v1/auth/login",
                                   {"email": email, "password": "NewSecret456!"})
    assert status == 200, body
    owner.token, owner.refresh_token = body["data"]["access_token"], body["data"]["refresh_token"]

    # Pets at the iOS paths.
    status, body = await owner.post("/api/v1/users/me/pets", {
        "name": "Kiki", "pet_type": "cat", "breed": "Siamese", "weight_kg": 3.2,
        "age_months": 18})
    assert status == 201, body
    pet = body["data"]
    assert pet["name"] == "Kiki" and pet["owner_id"] == owner.user["id"]
    status, body = await owner.get("/api/v1/users/me/pets")
    assert status == 200 and [p["id"] for p in body["data"]] == [pet["id"]]
    status, body = await owner.get("/api/v1/pets")
    assert [p["id"] for p in body["data"]] == [pet["id"]]
    runner_user = await new_client("runner")
    assert (await runner_user.get("/api/v1/users/me/pets"))[0] == 403

    # Book, pay, poll the payment by booking until held.
    pickup = spot()
    status, body = await owner.post("/api/v1/bookings", web_landing_booking(pickup))
    assert status == 201, body
    bid = body["data"]["id"]
    status, body = await owner.get("/api/v1/bookings?status=active")
    assert status == 200 and check_page(body, 1, 20) == []
    status, body = await owner.post("/api/v1/payments/initiate", {"booking_id": bid})
    assert status == 201, body

    async def held():
        s, b = await owner.get(f"/api/v1/payments/booking/{bid}")
        return b["data"] if s == 200 and b["data"]["escrow_status"] == "held" else None

    assert (await wait_until(held, 30, what="held"))["booking_id"] == bid

    # Active bookings once a runner has accepted.
    runner = await online_runner(new_client, pickup)
    assert (await runner.post(f"/api/v1/bookings/{bid}/accept"))[0] == 200
    status, body = await owner.get("/api/v1/bookings?status=active")
    assert [b["id"] for b in check_page(body, 1, 20)] == [bid]
    status, body = await owner.get("/api/v1/bookings?status=requested")
    assert check_page(body, 1, 20) == []

    # Notifications, marked read with POST.
    async def notified():
        s, b = await owner.get("/api/v1/notifications")
        return b["data"] if s == 200 and b["data"] else None

    items = await wait_until(notified, 60, what="notifications")
    nid = items[0]["id"]
    assert await owner.post(f"/api/v1/notifications/{nid}/read") == (
        200, {"success": True, "data": {"message": "notification marked as read"}})
    status, body = await owner.get("/api/v1/notifications")
    assert next(n for n in body["data"] if n["id"] == nid)["is_read"] is True


# ---------------------------------------------------------------- contract details the clients hit

async def test_owner_error_paths_and_limits(platform: Platform, http, new_client) -> None:
    owner = await new_client("owner")
    anon = Client(http, platform.base_url)
    # A browser can only see a 401 (and so refresh) when the 401 carries CORS headers.
    async with http.get(platform.base_url + "/api/v1/bookings",
                        headers={"Origin": "http://localhost:3000",
                                 "Authorization": "Bearer expired"}) as resp:
        assert resp.status == 401
        assert resp.headers.getall("Access-Control-Allow-Origin") == ["http://localhost:3000"]
    # Refresh errors.
    assert await anon.post("/api/v1/auth/refresh", {"refresh_token": "nope"}) == (
        401, {"success": False, "error": "invalid refresh token", "detail": ""})
    status, body = await anon.post("/api/v1/auth/refresh", {})
    assert status == 400 and body["success"] is False and "RefreshToken" in body["error"]
    # Login failure text.
    assert await anon.post("/api/v1/auth/login", {"email": owner.user["email"],
                                                  "password": "wrong-password"}) == (
        401, {"success": False, "error": "invalid email or password", "detail": ""})
    # Booking validation: weight 0 fails `required` (Go validator text).
    body = web_landing_booking(spot())
    body["pet_spec"]["weight_kg"] = 0
    assert await owner.post("/api/v1/bookings", body) == (400, {
        "success": False, "error": "Key: 'CreateBookingRequest.PetSpec.WeightKg' Error:Field "
                                   "validation for 'WeightKg' failed on the 'required' tag"})
    body = web_landing_booking(spot())
    body["pet_spec"]["pet_type"] = "dragon"
    status, resp = await owner.post("/api/v1/bookings", body)
    assert (status, resp["error"]) == (400, "invalid pet type: dragon"), resp
    for pet_type in ("hamster", "fish"):  # offered by web-landing
        body = web_landing_booking(spot())
        body["pet_spec"]["pet_type"] = pet_type
        status, resp = await owner.post("/api/v1/bookings", body)
        assert status == 201 and resp["data"]["pet_spec"]["pet_type"] == pet_type, resp
    # List limits: limit>100 → 100 for bookings.
    status, resp = await owner.get("/api/v1/bookings?page=0&limit=500")
    assert status == 200 and resp["pagination"]["page"] == 1
    assert resp["pagination"]["limit"] == 100 and resp["pagination"]["total"] == 2
    status, resp = await owner.get("/api/v1/bookings?page=3&limit=1")
    assert resp["data"] == [] and resp["pagination"] == {"total": 2, "page": 3, "limit": 1,
                                                         "total_pages": 2}
    status, resp = await owner.get("/api/v1/bookings?page=abc&limit=xyz")
    assert status == 200 and (resp["pagination"]["page"], resp["pagination"]["limit"]) == (1, 20)
    status, resp = await owner.get("/api/v1/notifications?limit=500")
    assert status == 200 and resp["pagination"]["limit"] == 20
    # Tracking before any runner: 404 with the contract's texts; empty route.
    bid = resp_bid = (await owner.get("/api/v1/bookings"))[1]["data"][0]["id"]
    assert await owner.get(f"/api/v1/tracking/{bid}") == (404, {
        "success": False, "error": "tracking not found",
        "detail": f"tracking with id '{bid}' was not found"})
    # Payment twice for one booking: a 4xx, never a 500 (DESIGN 4).
    assert (await owner.post("/api/v1/payments/initiate", {"booking_id": resp_bid}))[0] == 201
    status, resp = await owner.post("/api/v1/payments/initiate", {"booking_id": resp_bid})
    assert 400 <= status < 500 and resp["success"] is False, resp
    # Someone else's booking, payment and track are hidden (DESIGN 6).
    other = await new_client("owner")
    assert (await other.get(f"/api/v1/bookings/{bid}"))[0] == 403
    assert (await other.get(f"/api/v1/payments/booking/{bid}"))[0] == 403
    # WebSocket refusals through the gateway.
    base = platform.base_url
    async with http.get(base + f"/ws/tracking/{bid}") as r:
        assert r.status == 401
        assert await r.json() == {"error": "token query parameter is required"}
    async with http.get(base + f"/ws/tracking/{bid}?token=bad") as r:
        assert (r.status, await r.json()) == (401, {"error": "invalid or expired token"})
    async with http.get(base + f"/ws/tracking/nope?token={owner.token}") as r:
        assert (r.status, await r.json()) == (400, {"error": "invalid booking ID format"})
    # Health through the gateway.
    async with http.get(base + "/health") as r:
        health = await r.json()
        assert r.status == 200 and health["status"] == "healthy"
        assert health["service"] == "api-gateway"


async def test_ios_cursor_notifications(platform: Platform, new_client) -> None:
    """The iOS app's later cursor list: `?cursor=&limit=` → un-enveloped {items, nextCursor}."""
    owner = await new_client("owner")
    for _ in range(3):
        assert (await owner.post("/api/v1/bookings", web_landing_booking(spot())))[0] == 201

    async def three():
        s, b = await owner.get("/api/v1/notifications")
        return b["data"] if s == 200 and len(b["data"]) == 3 else None

    paged = await wait_until(three, 60, what="three notifications")
    assert await owner.post(f"/api/v1/notifications/{paged[1]['id']}/read") == (
        200, {"success": True, "data": {"message": "notification marked as read"}})
    seen, cursor = [], ""
    for _ in range(3):
        status, body = await owner.get(f"/api/v1/notifications?cursor={cursor}&limit=2")
        assert status == 200 and set(body) == {"items", "nextCursor"}, body
        for item in body["items"]:
            assert {"id", "type", "title", "body", "createdAt"} <= set(item) <= {
                "id", "type", "title", "body", "createdAt", "readAt"}
            assert is_time(item["createdAt"]) and item["type"] == "booking.requested"
            assert ("readAt" in item) == (item["id"] == paged[1]["id"])
            assert "readAt" not in item or is_time(item["readAt"])
        seen += [i["id"] for i in body["items"]]
        cursor = body["nextCursor"]
        if not cursor:
            break
    assert seen == [n["id"] for n in paged]
    status, body = await owner.get("/api/v1/notifications?cursor=!!garbage&limit=2")
    assert (status, body) == (400, {"success": False, "error": "invalid cursor"})
    status, body = await owner.get("/api/v1/notifications?cursor=&limit=500")
    assert status == 200 and len(body["items"]) == 3 and body["nextCursor"] == ""


async def test_owner_confirms_delivery_and_other_edges(platform: Platform, http,
                                                              new_client) -> None:
    email = f"edge-{uuid.uuid4().hex[:10]}@kilat.test"
    owner = await new_client("owner", email=email)
    anon = Client(http, platform.base_url)
    # Sign-up texts.
    status, body = await anon.post("/api/v1/auth/register", {
        "email": email, "password": "Secret123!", "full_name": "Dup", "role": "owner"})
    assert (status, body) == (409, {"success": False,
                                    "error": f"User with email '{email}' already exists",
                                    "detail": ""}), body
    status, body = await anon.post("/api/v1/auth/register", {
        "email": f"adm-{uuid.uuid4().hex[:8]}@kilat.test", "password": "Secret123!",
        "full_name": "Adm", "role": "admin"})
    assert 400 <= status < 500 and body["success"] is False, body

    # Without a payment the runner cannot pick the pet up (DESIGN 12); once paid, the booking
    # waits in `delivered` for the owner's confirm.
    pickup = spot()
    status, body = await owner.post("/api/v1/bookings", web_landing_booking(pickup))
    bid, path = body["data"]["id"], f"/api/v1/bookings/{body['data']['id']}"
    runner = await online_runner(new_client, pickup)
    assert (await runner.post(f"{path}/accept"))[0] == 200
    status, body = await runner.post(f"{path}/pickup")
    assert (status, body["success"], body["error"]) == (422, False, "escrow not held"), body
    assert (await owner.post("/api/v1/payments/initiate", {"booking_id": bid}))[0] == 201
    for step in ("pickup", "deliver"):
        status, body = await runner.post(f"{path}/{step}")
        assert status == 200, body
    assert body["data"]["status"] == "delivered" and is_time(body["data"]["delivered_at"])
    assert is_time(body["data"]["picked_up_at"])
    status, body = await owner.post(f"{path}/cancel")
    assert (status, body["error"]) == (
        422, "cannot transition from 'delivered' to 'cancelled'"), body
    status, body = await owner.post(f"{path}/confirm")
    assert status == 200, body
    check_booking(body["data"])
    assert body["data"]["status"] == "completed"
    assert body["data"]["final_price_cents"] == body["data"]["estimated_price_cents"]

    # Chat: a bad message type is a 400, not the original's 500 (DESIGN 4).
    status, body = await owner.post(f"/api/v1/chat/{bid}/messages",
                                    {"message_type": "video", "content": "x"})
    assert status == 400 and body["success"] is False, body
    status, body = await owner.post(f"/api/v1/chat/{bid}/messages",
                                    {"message_type": "quick_reply", "content": "On my way"})
    assert status == 201, body

    # Cancel with no body at all (the body is optional).
    status, body = await owner.post("/api/v1/bookings", web_landing_booking(spot()))
    async with http.post(f"{platform.base_url}/api/v1/bookings/{body['data']['id']}/cancel",
                         headers={"Authorization": f"Bearer {owner.token}"}) as resp:
        assert resp.status == 200
        assert (await resp.json())["data"]["status"] == "cancelled"

    # Expired share link.
    status, body = await owner.post(f"/api/v1/tracking/{bid}/share")
    assert status == 201, body
    platform.sql("UPDATE shared_trips SET expires_at = now() - interval '1 minute' "
                 "WHERE share_token = %s", (body["data"]["share_token"],))
    assert await anon.get(body["data"]["share_url"]) == (
        404, {"error": "share link has expired", "success": False})

    # Subscriptions: none → 404; a second active one → 4xx.
    status, body = await owner.get("/api/v1/subscriptions/me")
    assert status == 404 and body["success"] is False, body
    assert (await owner.post("/api/v1/subscriptions", {"plan": "premium"}))[0] == 201
    status, body = await owner.post("/api/v1/subscriptions", {"plan": "basic"})
    assert 400 <= status < 500 and body["success"] is False, body
    status, body = await owner.post("/api/v1/subscriptions", {"plan": "gold"})
    assert 400 <= status < 500 and body["success"] is False, body

    # Notifications of someone else are not found.
    async def one():
        s, b = await owner.get("/api/v1/notifications")
        return b["data"] if b["data"] else None

    nid = (await wait_until(one, 60, what="notification"))[0]["id"]
    other = await new_client("owner")
    status, body = await other.put(f"/api/v1/notifications/{nid}/read")
    assert status == 404 and body["success"] is False
