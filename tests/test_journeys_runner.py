"""Client journeys of the runner, shop and admin apps through the gateway (reference §8.1
web-runner/web-seller, §8.2 app-runner/app-shop, §8.3 app-runner-ios).

Each test walks one client's calls in the order the app makes them, with the request bodies the
apps send, and asserts every field the app reads (key names, types, RFC3339 `Z` times, integer
cents, arrays never null, pagination shape) and the contract's status codes and error texts.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any

import aiohttp

from tests.platform import wait_until

TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
KL = (3.139, 101.6869)
HERE = (4.2105, 103.4200)  # Kuantan: far from the other tests' bookings

USER_KEYS = {"id", "email", "phone", "full_name", "role", "is_verified", "created_at"}
RUNNER_KEYS = {"id", "user_id", "full_name", "phone", "vehicle_type", "vehicle_plate",
               "vehicle_model", "air_conditioned", "session_status", "rating", "total_trips",
               "created_at"}
CRATE_KEYS = {"id", "size", "pet_types", "max_weight_kg", "width_cm", "height_cm", "depth_cm",
              "ventilated", "temperature_controlled"}
BOOKING_KEYS = {"id", "booking_number", "owner_id", "status", "pet_spec", "crate_requirement",
                "pickup_address", "dropoff_address", "estimated_price_cents", "currency",
                "version", "created_at", "updated_at"}
PAYMENT_KEYS = {"id", "booking_id", "owner_id", "escrow_status", "amount_cents",
                "platform_fee_cents", "runner_payout_cents", "currency", "version",
                "created_at", "updated_at"}
SHOP_KEYS = {"id", "owner_id", "name", "address", "latitude", "longitude", "phone", "email",
             "category", "services", "rating", "opening_hours", "description", "created_at"}


# ---------------------------------------------------------------- assertions

def is_time(value: Any) -> bool:
    return isinstance(value, str) and bool(TIME.match(value))


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def data_of(status: int, body: Any, expected: int = 200) -> Any:
    assert status == expected, body
    assert body["success"] is True, body
    assert "data" in body, body
    return body["data"]


def page_of(status: int, body: Any, page: int = 1, limit: int = 20) -> list[dict]:
    data = data_of(status, body)
    assert isinstance(data, list), body
    p = body["pagination"]
    assert set(p) == {"total", "page", "limit", "total_pages"}, p
    assert all(is_int(p[k]) for k in p), p
    assert (p["page"], p["limit"]) == (page, limit), p
    assert p["total_pages"] == -(-p["total"] // p["limit"]), p
    return data


def error_of(status: int, body: Any, expected: int, error: str, detail: str | None = None) -> None:
    assert status == expected, body
    assert body["success"] is False, body
    assert body["error"] == error, body
    if detail is not None:
        assert body["detail"] == detail, body


def check_user(u: dict, role: str) -> None:
    assert USER_KEYS <= set(u), u
    assert u["role"] == role and UUID.match(u["id"]) and is_time(u["created_at"])
    assert isinstance(u["is_verified"], bool)


def check_auth(data: dict, role: str) -> None:
    assert set(data) >= {"access_token", "refresh_token", "user"}, data
    assert isinstance(data["access_token"], str) and isinstance(data["refresh_token"], str)
    check_user(data["user"], role)


def check_runner(r: dict) -> None:
    assert RUNNER_KEYS <= set(r), r
    assert "vehicle_year" not in r
    assert is_num(r["rating"]) and is_int(r["total_trips"]), r
    assert r["session_status"] in ("active", "inactive")
    assert isinstance(r["air_conditioned"], bool) and is_time(r["created_at"])


def check_booking(b: dict) -> None:
    assert BOOKING_KEYS <= set(b), b
    assert is_int(b["estimated_price_cents"]) and b["currency"] == "MYR"
    assert is_time(b["created_at"]) and is_time(b["updated_at"])
    assert isinstance(b["pet_spec"]["vaccinations"], list)
    for key in ("picked_up_at", "delivered_at", "cancelled_at", "scheduled_at"):
        assert b.get(key) is None or is_time(b[key]), (key, b)
    if "final_price_cents" in b:
        assert is_int(b["final_price_cents"])
    assert re.match(r"^BK-[ABCDEFGHJKLMNPQRSTUVWXYZ23456789]{6}$", b["booking_number"])


def check_payment(p: dict) -> None:
    assert PAYMENT_KEYS <= set(p), p
    for key in ("amount_cents", "platform_fee_cents", "runner_payout_cents", "version"):
        assert is_int(p[key]), (key, p)
    assert p["amount_cents"] == p["platform_fee_cents"] + p["runner_payout_cents"]
    for key in ("escrow_held_at", "escrow_released_at", "refunded_at", "created_at",
                "updated_at"):
        assert p.get(key) is None or is_time(p[key]), (key, p)


def check_shop(s: dict) -> None:
    assert SHOP_KEYS <= set(s), s
    assert isinstance(s["services"], list) and is_num(s["rating"]) and is_time(s["created_at"])


def address(lat: float, lng: float, line1: str = "Jalan Ampang") -> dict:
    return {"line1": line1, "city": "Kuala Lumpur", "state": "WP Kuala Lumpur",
            "postal_code": "50450", "country": "MY", "latitude": lat, "longitude": lng}


async def book(owner, pickup: tuple[float, float], name: str = "Milo") -> dict:
    """The owner's booking as app-mobile sends it (full pet_spec)."""
    status, body = await owner.post("/api/v1/bookings", {
        "pet_spec": {"pet_type": "cat", "name": name, "weight_kg": 4, "breed": "Persian",
                     "age_months": 18, "vaccinations": [], "special_needs": "", "photo_url": ""},
        "pickup_address": address(*pickup),
        "dropoff_address": address(3.15, 101.71, "Bangsar"),
        "notes": "Ring the bell"})
    b = data_of(status, body, 201)
    check_booking(b)
    return b


async def runner_setup(new_client, lat: float, lng: float, *, full_body: bool = True):
    runner = await new_client("runner")
    body: dict[str, Any] = {"vehicle_type": "car", "vehicle_plate": "WXY 1234",
                            "vehicle_model": "Perodua Myvi", "vehicle_year": 2022,
                            "air_conditioned": True}
    if full_body:  # app-runner sends the full body; web-runner omits full_name and phone
        body = {"full_name": "Farid Runner", "phone": "+60111111111", **body}
    data_of(*await runner.post("/api/v1/runners", body), 201)
    data_of(*await runner.post("/api/v1/runners/me/online", {"latitude": lat, "longitude": lng}))
    return runner


# ---------------------------------------------------------------- runner journey

async def test_runner_journey(platform, new_client, client):
    """web-runner / app-runner / app-runner-ios: sign up, set up, go online, find the nearest
    job, accept, pick up, stream GPS (seen on the tracking WebSocket), deliver, get paid, see
    earnings and cash out."""
    # --- sign up and log in (web-runner: role runner) -------------------------------------
    email = f"runner-{uuid.uuid4().hex[:8]}@kilat.test"
    status, body = await client.post("/api/v1/auth/register", {
        "email": email, "password": "TestRunner123!", "full_name": "Farid Runner",
        "phone": "+60123456780", "role": "runner"})
    check_auth(data_of(status, body, 201), "runner")
    status, body = await client.post("/api/v1/auth/login",
                                     {"email": email, "password": "TestRunner123!"})
    auth = data_of(status, body)
    check_auth(auth, "runner")
    runner = client
    runner.token, runner.refresh_token = auth["access_token"], auth["refresh_token"]
    uid = auth["user"]["id"]

    status, body = await runner.get("/api/v1/auth/profile")
    check_user(data_of(status, body), "runner")

    # --- no profile yet: the dashboard gets the contract's 404 -----------------------------
    error_of(*await runner.get("/api/v1/runners/me"), 404, "runner not found",
             f"runner with id '{uid}' was not found")
    # Location while not registered / offline
    error_of(*await runner.post("/api/v1/runners/me/location",
                                {"latitude": KL[0], "longitude": KL[1]}), 404, "runner not found")

    # --- web-runner setup body (no full_name / phone) → 201, defaults from the account ----
    status, body = await runner.post("/api/v1/runners", {
        "vehicle_type": "motorcycle", "vehicle_plate": "VBN 2026", "vehicle_model": "Honda EX5",
        "vehicle_year": 2021, "air_conditioned": False})
    profile = data_of(status, body, 201)
    check_runner(profile)
    assert profile["user_id"] == uid and profile["id"] != uid
    assert profile["full_name"] == "Farid Runner" and profile["phone"] == "+60123456780"
    assert profile["session_status"] == "inactive" and "crate_specs" not in profile
    error_of(*await runner.post("/api/v1/runners", {
        "vehicle_type": "car", "vehicle_plate": "X", "vehicle_model": "Y", "vehicle_year": 2020}),
        409, f"runner with user_id '{uid}' already exists")

    # --- crates (web-runner body) -------------------------------------------------------------
    status, body = await runner.post("/api/v1/runners/me/crates", {
        "size": "medium", "pet_types": ["cat", "dog"], "max_weight_kg": 15, "width_cm": 60,
        "height_cm": 45, "depth_cm": 50, "ventilated": True, "temperature_controlled": False})
    crate = data_of(status, body, 201)
    assert set(crate) == CRATE_KEYS and crate["pet_types"] == ["cat", "dog"]

    status, body = await runner.get("/api/v1/runners/me")
    me = data_of(status, body)
    check_runner(me)
    assert me["vehicle_type"] == "motorcycle" and me["total_trips"] == 0
    assert [c["id"] for c in me["crate_specs"]] == [crate["id"]]

    # --- location is refused while offline -------------------------------------------------------
    error_of(*await runner.post("/api/v1/runners/me/location",
                                {"latitude": KL[0], "longitude": KL[1]}),
             400, "runner must be online to update location")

    # --- two owners book: one near the runner, one farther ----------------------------------
    owner = await new_client("owner")
    # In a quiet corner of the map, so other tests' open jobs in central KL are farther away.
    far = await book(owner, (HERE[0] + 0.061, HERE[1] + 0.063), "Far")
    near = await book(owner, (HERE[0] + 0.001, HERE[1] + 0.001), "Near")

    # offline runner: the open jobs are listed (newest first), not nearest first
    status, body = await runner.get("/api/v1/bookings?status=requested&page=1&limit=50")
    jobs = page_of(status, body, 1, 50)
    ids = [j["id"] for j in jobs]
    assert near["id"] in ids and far["id"] in ids

    # --- online, then nearest first -----------------------------------------------------------
    status, body = await runner.post("/api/v1/runners/me/online",
                                     {"latitude": HERE[0], "longitude": HERE[1]})
    assert data_of(status, body) == {"message": "runner is now online"}
    status, body = await runner.get("/api/v1/runners/me")
    assert data_of(status, body)["session_status"] == "active"

    status, body = await runner.get("/api/v1/bookings?status=requested&page=1&limit=20")
    jobs = page_of(status, body, 1, 20)
    ids = [j["id"] for j in jobs]
    assert ids.index(near["id"]) < ids.index(far["id"]), ids
    for j in jobs:
        check_booking(j)
        assert j["status"] == "requested" and "runner_id" not in j

    # the runner's own list (web-runner dashboard, ?page=1&limit=5) is empty so far: data = []
    status, body = await runner.get("/api/v1/bookings?page=1&limit=5")
    assert page_of(status, body, 1, 5) == [] and body["pagination"]["total"] == 0

    # --- the owner pays the near booking as web-landing does -------------------------------
    status, body = await owner.post("/api/v1/payments/initiate", {
        "booking_id": near["id"], "amount_cents": near["estimated_price_cents"],
        "currency": "MYR", "customer_email": owner.user["email"]})
    payment = data_of(status, body, 201)
    check_payment(payment)
    assert payment["escrow_status"] == "held"

    # --- accept (no body) -----------------------------------------------------------------------
    status, body = await runner.post(f"/api/v1/bookings/{near['id']}/accept")
    accepted = data_of(status, body)
    check_booking(accepted)
    assert accepted["status"] == "accepted" and accepted["runner_id"] == uid
    status, body = await runner.get(f"/api/v1/bookings/{near['id']}")
    assert data_of(status, body)["status"] == "accepted"
    # a second runner is too late: 422 from the state machine
    other = await runner_setup(new_client, KL[0], KL[1])
    error_of(*await other.post(f"/api/v1/bookings/{near['id']}/accept"), 422,
             "cannot transition from 'accepted' to 'accepted'")
    # the accepted job left the open list
    status, body = await other.get("/api/v1/bookings?status=requested&limit=100")
    assert near["id"] not in [j["id"] for j in page_of(status, body, 1, 100)]
    # pickup before accept / by a stranger is refused
    status, body = await other.post(f"/api/v1/bookings/{near['id']}/pickup")
    assert status == 403 and body["success"] is False, body

    # --- the track exists: REST, and the iOS alias -------------------------------------------
    async def track_started() -> Any:
        s, b = await runner.get(f"/api/v1/tracking/{near['id']}")
        return b["data"] if s == 200 else None
    track = await wait_until(track_started, 30, 0.2, "track started")
    assert track["runner_id"] == uid and track["status"] == "active"
    assert track["waypoints"] == [] and is_time(track["started_at"])
    status, body = await runner.get(f"/api/v1/bookings/{near['id']}/tracking")
    ios = data_of(status, body)
    assert ios["id"] == track["id"] and ios["booking_id"] == near["id"]

    # --- WebSocket from the runner's app, then pickup and GPS every 10 s ------------------
    ws_url = (platform.base_url.replace("http", "ws", 1)
              + f"/ws/tracking/{near['id']}?token={runner.token}")
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
        status, body = await runner.post(f"/api/v1/bookings/{near['id']}/pickup")
        picked = data_of(status, body)
        assert picked["status"] == "in_progress" and is_time(picked["picked_up_at"])

        fixes = [(3.1405, 101.6885), (3.1420, 101.6900), (3.1440, 101.6930)]
        for lat, lng in fixes:
            status, body = await runner.post("/api/v1/runners/me/location",
                                             {"latitude": lat, "longitude": lng})
            assert data_of(status, body) == {"message": "location updated"}
        # app-runner also sends speed and heading
        status, body = await runner.post("/api/v1/runners/me/location", {
            "latitude": 3.1460, "longitude": 101.6960, "speed_kmh": 32.5,
            "heading_degrees": 45})
        assert data_of(status, body) == {"message": "location updated"}

        # app-runner-ios passes CoreLocation's -1 ("unknown") speed and course through
        status, body = await runner.post("/api/v1/runners/me/location", {
            "latitude": 3.1470, "longitude": 101.6970, "speed_kmh": -1,
            "heading_degrees": -1})
        assert data_of(status, body) == {"message": "location updated"}

        frames: list[dict] = []
        while len([f for f in frames if f.get("type") == "location_update"]) < 5:
            msg = await asyncio.wait_for(ws.receive(), 30)
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            frames += [json.loads(line) for line in msg.data.split("\n") if line.strip()]
        updates = [f["data"] for f in frames if f.get("type") == "location_update"]
        assert set(updates[0]) == {"booking_id", "runner_id", "latitude", "longitude",
                                   "speed_kmh", "heading_degrees", "timestamp",
                                   "eta_minutes", "distance_remaining_km"}, updates[0]
        assert updates[0]["runner_id"] == uid and updates[0]["booking_id"] == near["id"]
        assert is_time(updates[0]["timestamp"])
        assert updates[3]["speed_kmh"] == 32.5 and updates[3]["heading_degrees"] == 45
        assert updates[4]["speed_kmh"] == 0 and updates[4]["heading_degrees"] == 0

        # chat from the runner reaches the room (flat frame)
        status, body = await runner.post(f"/api/v1/chat/{near['id']}/messages",
                                         {"message_type": "text", "content": "On my way"})
        chat = data_of(status, body, 201)
        assert chat["sender_id"] == uid and chat["sender_role"] == "runner"
        assert is_time(chat["created_at"])
        while True:
            msg = await asyncio.wait_for(ws.receive(), 30)
            found = [json.loads(line) for line in msg.data.split("\n") if line.strip()]
            chats = [f for f in found if f.get("type") == "chat_message"]
            if chats:
                break
        assert chats[0]["message_id"] == chat["id"] and chats[0]["content"] == "On my way"

    status, body = await runner.get(f"/api/v1/chat/{near['id']}/messages?page=1&limit=50")
    assert [m["id"] for m in page_of(status, body, 1, 50)] == [chat["id"]]

    async def waypoints() -> Any:
        s, b = await runner.get(f"/api/v1/bookings/{near['id']}/tracking")
        return b["data"] if s == 200 and len(b["data"]["waypoints"]) >= 5 else None
    track = await wait_until(waypoints, 30, 0.2, "waypoints stored")
    wp = track["waypoints"][0]
    assert set(wp) == {"id", "latitude", "longitude", "speed_kmh", "heading_degrees",
                       "recorded_at"} and is_time(wp["recorded_at"])
    assert is_num(track["total_distance_km"]) and track["total_distance_km"] > 0

    # --- deliver → the owner confirms → escrow released ---------------------------------------
    status, body = await runner.post(f"/api/v1/bookings/{near['id']}/deliver")
    delivered = data_of(status, body)
    assert delivered["status"] == "delivered" and is_time(delivered["delivered_at"])
    status, body = await runner.get(f"/api/v1/payments/booking/{near['id']}")
    assert data_of(status, body)["escrow_status"] == "held"  # waits for the owner
    status, body = await owner.post(f"/api/v1/bookings/{near['id']}/confirm")
    done = data_of(status, body)
    check_booking(done)
    assert done["status"] == "completed"
    assert done["final_price_cents"] == done["estimated_price_cents"]
    error_of(*await owner.post(f"/api/v1/bookings/{near['id']}/confirm"), 422,
             "cannot transition from 'completed' to 'completed'")

    async def released() -> Any:
        s, b = await runner.get(f"/api/v1/payments/booking/{near['id']}")
        return s == 200 and b["data"]["escrow_status"] == "released"
    await wait_until(released, 30, 0.2, "escrow released after the owner's confirm")

    # --- earnings ------------------------------------------------------------------------------
    status, body = await runner.get(f"/api/v1/payments/booking/{near['id']}")
    paid = data_of(status, body)
    check_payment(paid)
    assert paid["escrow_status"] == "released" and paid["runner_id"] == uid
    assert paid["platform_fee_cents"] == paid["amount_cents"] * 15 // 100
    assert is_time(paid["escrow_released_at"])

    status, body = await runner.get("/api/v1/bookings?status=completed&page=1&limit=20")
    earned = page_of(status, body)
    assert [b["id"] for b in earned] == [near["id"]]
    assert earned[0]["final_price_cents"] == near["estimated_price_cents"]

    status, body = await runner.get("/api/v1/payments")  # app-runner earnings (no query)
    payments = page_of(status, body)
    assert [p["id"] for p in payments] == [paid["id"]]
    check_payment(payments[0])

    async def one_trip() -> Any:
        s, b = await runner.get("/api/v1/runners/me")
        return b["data"] if b["data"]["total_trips"] == 1 else None
    await wait_until(one_trip, 30, 0.2, "trip counted")

    async def track_done() -> Any:
        s, b = await runner.get(f"/api/v1/tracking/{near['id']}")
        return b["data"] if b["data"]["status"] == "completed" else None
    finished = await wait_until(track_done, 30, 0.2, "track completed")
    assert is_time(finished["completed_at"])

    # --- cash-out ----------------------------------------------------------------------------------
    status, body = await runner.post("/api/v1/payouts/destinations", {
        "bank_name": "Maybank", "account_number": "1234567890", "account_holder": "Farid"})
    dest = data_of(status, body, 201)
    status, body = await runner.get("/api/v1/payouts/destinations")
    assert [d["id"] for d in data_of(status, body)] == [dest["id"]]
    payout = paid["runner_payout_cents"]
    status, body = await runner.post("/api/v1/payouts/cash-out",
                                     {"amountMyrCents": payout, "destinationId": dest["id"]})
    assert status == 400 and body == {"success": False,
                                      "error": "amount exceeds available balance"}, body
    status, body = await runner.post("/api/v1/payouts/cash-out",
                                     {"amountMyrCents": 0, "destinationId": dest["id"]})
    assert status == 400 and body["error"] == "amountMyrCents must be greater than 0"
    status, body = await runner.post("/api/v1/payouts/cash-out",
                                     {"amountMyrCents": 100, "destinationId": ""})
    assert status == 400 and body["error"] == "destinationId is required"
    status, body = await runner.post("/api/v1/payouts/cash-out",
                                     {"amountMyrCents": 100, "destinationId": "nope"})
    assert status == 400 and body["error"] == "destinationId must be a valid UUID"
    status, body = await runner.post("/api/v1/payouts/cash-out",
                                     {"amountMyrCents": 100, "destinationId": str(uuid.uuid4())})
    assert (status, body) == (403, {"error": "destination does not belong to runner"})
    status, body = await runner.post("/api/v1/payouts/cash-out",
                                     {"amountMyrCents": payout - 50, "destinationId": dest["id"]})
    assert status == 202, body
    assert set(body) == {"cashOutId", "etaMinutes"} and UUID.match(body["cashOutId"])
    assert body["etaMinutes"] == 1

    # --- the events other services rely on (§4.2), keyed by the aggregate ------------------------
    envelope = {"id", "source", "type", "time", "datacontenttype", "data"}
    # Acceptance carries the trip's targets (the trip stage's ETA needs them).
    TRIP_LEGS = ("pickup_lat", "pickup_lng", "dropoff_lat", "dropoff_lng")  # noqa: N806
    for topic, type_, keys, match in (
        ("runner.events", "runner.online",
         {"runner_id", "latitude", "longitude", "crates", "occurred_at"},
         {"runner_id": uid}),
        ("runner.events", "runner.location_update",
         {"runner_id", "latitude", "longitude", "speed_kmh", "heading_degrees", "timestamp",
          "occurred_at"}, {"runner_id": uid}),
        ("runner.events", "runner.assigned",
         {"runner_id", "booking_id", *TRIP_LEGS, "occurred_at"},
         {"runner_id": uid}),
        ("booking.events", "booking.accepted",
         {"booking_id", "booking_number", "runner_id", "owner_id", *TRIP_LEGS, "occurred_at"},
         {"booking_id": near["id"]}),
        ("booking.events", "booking.delivery_confirmed",
         {"booking_id", "booking_number", "runner_id", "owner_id", "delivered_at", "occurred_at"},
         {"booking_id": near["id"]}),
        ("payment.events", "payment.escrow_released",
         {"payment_id", "booking_id", "runner_id", "runner_payout_cents", "platform_fee_cents",
          "currency", "occurred_at"}, {"booking_id": near["id"]}),
    ):
        event = (await platform.wait_event(topic, type_, **match))[0]
        assert envelope <= set(event) and event["source"].startswith("service-"), event
        assert keys <= set(event["data"]), (type_, event["data"])
        assert event["data"]["runner_id"] == uid, event
        assert event["_key"] == (uid if topic == "runner.events" else near["id"]), event

    # --- notifications: the runner is told about the payout ------------------------------------
    async def payout_notice() -> Any:
        s, b = await runner.get("/api/v1/notifications?page=1&limit=20")
        found = [n for n in page_of(s, b) if n["event_type"] == "payment.escrow_released"]
        return found or None
    notices = await wait_until(payout_notice, 30, 0.3, "runner payout notification")
    n = notices[0]
    assert {"id", "user_id", "booking_id", "event_type", "title", "body", "status", "is_read",
            "channels_sent", "channels_failed", "created_at"} <= set(n), n
    assert n["user_id"] == uid and n["booking_id"] == near["id"] and n["is_read"] is False
    assert is_time(n["created_at"]) and isinstance(n["channels_sent"], list)
    status, body = await runner.put(f"/api/v1/notifications/{n['id']}/read")
    assert data_of(status, body) == {"message": "notification marked as read"}
    status, body = await runner.put("/api/v1/auth/profile", {"full_name": "Farid B."})
    assert data_of(status, body)["full_name"] == "Farid B."
    status, body = await runner.post("/api/v1/runners/me/offline")
    assert data_of(status, body) == {"message": "runner is now offline"}
    status, body = await runner.get("/api/v1/runners/me")
    assert data_of(status, body)["session_status"] == "inactive"

    # refresh as the apps do on 401, then logout revokes it
    status, body = await runner.post("/api/v1/auth/refresh",
                                     {"refresh_token": runner.refresh_token}, token="")
    fresh = data_of(status, body)
    check_auth(fresh, "runner")
    runner.token = fresh["access_token"]
    status, body = await runner.post("/api/v1/auth/logout")
    assert data_of(status, body) == {"message": "logged out successfully"}
    status, body = await runner.post("/api/v1/auth/refresh",
                                     {"refresh_token": fresh["refresh_token"]}, token="")
    assert status == 401 and body["success"] is False, body


async def test_runner_decline_returns_job_to_the_open_list(new_client):
    owner = await new_client("owner")
    job = await book(owner, KL)
    runner = await runner_setup(new_client, KL[0], KL[1])
    data_of(*await runner.post(f"/api/v1/bookings/{job['id']}/accept"))
    status, body = await runner.post(f"/api/v1/bookings/{job['id']}/decline",
                                     {"reason": "nope"})
    assert status == 400 and body["error"] == (
        "reason must be one of: too_far, cannot_transport, already_busy, pickup_issue, other")
    status, body = await runner.post(f"/api/v1/bookings/{job['id']}/decline",
                                     {"reason": "too_far"})
    declined = data_of(status, body)
    assert declined["status"] == "requested" and "runner_id" not in declined
    status, body = await runner.get("/api/v1/bookings?status=requested&limit=100")
    assert job["id"] in [j["id"] for j in page_of(status, body, 1, 100)]
    error_of(*await runner.post(f"/api/v1/bookings/{job['id']}/decline",
                                {"reason": "too_far"}), 403, "not your booking")
    # proof photos
    data_of(*await runner.post(f"/api/v1/bookings/{job['id']}/accept"))
    status, body = await runner.post(f"/api/v1/bookings/{job['id']}/photo", {
        "photo_type": "pickup", "photo_url": "https://img.example/p.jpg", "caption": "Milo"})
    photo = data_of(status, body, 201)
    assert set(photo) == {"id", "booking_id", "runner_id", "photo_type", "photo_url", "caption",
                          "taken_at", "created_at"} and is_time(photo["taken_at"])
    status, body = await runner.get(f"/api/v1/bookings/{job['id']}/photos")
    assert [p["id"] for p in data_of(status, body)] == [photo["id"]]


async def test_runner_validation_errors(new_client):
    runner = await new_client("runner")
    # app-runner without vehicle fields → Go-validator style 400
    status, body = await runner.post("/api/v1/runners", {"full_name": "A", "phone": "1"})
    assert status == 400 and body["success"] is False and "detail" not in body
    assert "VehicleType" in body["error"] or "vehicle_type" in body["error"], body
    data_of(*await runner.post("/api/v1/runners", {
        "full_name": "A", "phone": "+60123456789", "vehicle_type": "van",
        "vehicle_plate": "P", "vehicle_model": "M", "vehicle_year": 2020}), 201)
    # a missing coordinate is a 400 (a zero one is accepted: docs/runner.md)
    status, body = await runner.post("/api/v1/runners/me/online", {"longitude": 101.7})
    assert status == 400 and body["success"] is False
    status, body = await runner.post("/api/v1/runners/me/online", {"latitude": 91,
                                                                   "longitude": 101.7})
    assert status == 400 and body["success"] is False
    # an owner cannot use the runner endpoints: middleware body, no success key
    owner = await new_client("owner")
    assert await owner.get("/api/v1/runners/me") == (403, {"error": "insufficient permissions"})
    assert await owner.post(f"/api/v1/bookings/{uuid.uuid4()}/accept") == (
        403, {"error": "insufficient permissions"})
    status, body = await runner.get("/api/v1/runners/me", token="")
    assert (status, body) == (401, {"error": "authorization header is required"})
    status, body = await runner.get("/api/v1/runners/me", token="garbage")
    assert (status, body) == (401, {"error": "invalid or expired token"})
    error_of(*await runner.post("/api/v1/bookings/not-a-uuid/accept"), 400, "invalid booking ID")
    missing = str(uuid.uuid4())
    error_of(*await runner.post(f"/api/v1/bookings/{missing}/accept"), 404, "Booking not found",
             f"Booking with id '{missing}' was not found")


# ---------------------------------------------------------------- shop journey

async def test_shop_journey(new_client):
    """web-seller / app-shop: sign up as shop, no shop yet, create, read mine[0], update with
    the same body, delete."""
    shop = await new_client("shop")
    check_user(shop.user, "shop")
    status, body = await shop.get("/api/v1/petshops/mine")
    assert data_of(status, body) == []

    seller_body = {"name": "Kedai Kucing", "phone": "+60312345678", "email": "kk@shop.my",
                   "category": "grooming", "description": "Cat grooming",
                   "address": "12 Jalan Telawi, Bangsar", "latitude": 3.1325,
                   "longitude": 101.6710, "services": ["bath", "nail trim"],
                   "opening_hours": "09:00-18:00"}
    status, body = await shop.post("/api/v1/petshops", seller_body)
    created = data_of(status, body, 201)
    check_shop(created)
    assert created["owner_id"] == shop.user["id"] and "image_url" not in created
    for key, value in seller_body.items():
        assert created[key] == value, key

    status, body = await shop.get("/api/v1/petshops/mine")
    mine = data_of(status, body)
    assert mine[0]["id"] == created["id"]

    status, body = await shop.put(f"/api/v1/petshops/{created['id']}",
                                  {**seller_body, "name": "Kedai Kucing Comel",
                                   "services": ["bath"]})
    updated = data_of(status, body)
    assert updated["name"] == "Kedai Kucing Comel" and updated["services"] == ["bath"]

    status, body = await shop.get(f"/api/v1/petshops/{created['id']}")
    assert data_of(status, body)["name"] == "Kedai Kucing Comel"
    status, body = await shop.get("/api/v1/petshops?category=grooming")
    assert created["id"] in [s["id"] for s in data_of(status, body)]
    status, body = await shop.get("/api/v1/petshops/nearby?latitude=3.1325&longitude=101.6710")
    assert data_of(status, body)[0]["id"] == created["id"]

    other = await new_client("shop")
    error_of(*await other.put(f"/api/v1/petshops/{created['id']}", seller_body), 403,
             "you do not own this pet shop")
    error_of(*await other.delete(f"/api/v1/petshops/{created['id']}"), 403,
             "you do not own this pet shop")
    status, body = await shop.put(f"/api/v1/petshops/{created['id']}",
                                  {**seller_body, "category": "spa"})
    assert status == 400 and body["success"] is False

    status, body = await shop.delete(f"/api/v1/petshops/{created['id']}")
    assert data_of(status, body) == {"message": "pet shop deleted"}
    assert await shop.get(f"/api/v1/petshops/{created['id']}") == (
        404, {"success": False, "error": "not found"})
    error_of(*await shop.put(f"/api/v1/petshops/{created['id']}", seller_body), 404,
             "PetShop not found")
    status, body = await shop.get("/api/v1/petshops/mine")
    assert data_of(status, body) == []
    status, body = await shop.post("/api/v1/petshops", {**seller_body, "category": "spa"})
    assert status == 400 and body["success"] is False
    status, body = await shop.get("/api/v1/notifications")
    assert page_of(status, body) == []


# ---------------------------------------------------------------- admin

async def test_admin_journey(new_client, new_admin):
    admin = new_admin
    check_user(admin.user, "admin")
    owner = await new_client("owner")
    runner = await runner_setup(new_client, KL[0], KL[1])

    status, body = await admin.get("/api/v1/admin/users?page=1&limit=20")
    for u in page_of(status, body):
        check_user(u, u["role"])
    status, body = await admin.get(f"/api/v1/admin/users/{owner.user['id']}")
    assert data_of(status, body)["email"] == owner.user["email"]
    error_of(*await admin.get("/api/v1/admin/users/xyz"), 400, "invalid user ID")
    status, body = await admin.get("/api/v1/admin/stats/users")
    stats = data_of(status, body)
    assert is_int(stats["total_users"]) and all(is_int(v) for v in stats["by_role"].values())

    job = await book(owner, KL)
    status, body = await owner.post("/api/v1/payments/initiate", {
        "booking_id": job["id"], "amount_cents": job["estimated_price_cents"],
        "currency": "MYR", "customer_email": owner.user["email"]})
    payment = data_of(status, body, 201)

    status, body = await admin.get("/api/v1/admin/bookings?page=1&limit=20")
    for b in page_of(status, body):
        check_booking(b)
    status, body = await admin.get("/api/v1/admin/stats/bookings")
    stats = data_of(status, body)
    assert is_int(stats["total_bookings"]) and stats["by_status"]["requested"] >= 1

    status, body = await admin.get("/api/v1/admin/payments?page=1&limit=20")
    assert payment["id"] in [p["id"] for p in page_of(status, body)]
    status, body = await admin.get("/api/v1/admin/stats/payments")
    stats = data_of(status, body)
    assert set(stats) == {"total_revenue_cents", "total_payments", "by_status"}
    assert is_int(stats["total_revenue_cents"]) and is_int(stats["total_payments"])

    status, body = await admin.post("/api/v1/promos", {
        "code": f"kilat{uuid.uuid4().hex[:6]}", "discount_type": "percentage",
        "discount_value": 10, "min_amount_cents": 0, "max_discount_cents": 500, "max_uses": 0,
        "valid_from": "2020-01-01T00:00:00Z", "valid_until": "2099-01-01T00:00:00Z"})
    promo = data_of(status, body, 201)
    assert promo["code"] == promo["code"].upper() and is_time(promo["valid_from"])
    status, body = await admin.get("/api/v1/admin/promos")
    assert promo["id"] in [p["id"] for p in data_of(status, body)]

    status, body = await admin.post(f"/api/v1/payments/{payment['id']}/refund",
                                    {"reason": "customer asked"})
    refunded = data_of(status, body)
    assert refunded["escrow_status"] == "refunded" and refunded["refund_reason"] == "customer asked"
    error_of(*await admin.post(f"/api/v1/payments/{payment['id']}/refund", {"reason": "again"}),
             422, "cannot transition from 'refunded' to 'refunded'")

    status, body = await admin.post(f"/api/v1/admin/users/{runner.user['id']}/ban")
    assert data_of(status, body) == {"message": "user banned successfully"}
    status, body = await runner.post("/api/v1/auth/refresh",
                                     {"refresh_token": runner.refresh_token}, token="")
    assert status == 401, body
    assert await runner.get("/api/v1/admin/stats/users") == (
        403, {"error": "insufficient permissions"})


# ---------------------------------------------------------------- seed accounts

async def test_seed_demo_creates_the_apps_test_logins_once(platform, client):
    """`kilat seed-demo` (make demo) gives the iOS runner app its built-in login
    runner.test@kilat.my / TestRunner123! with a runner profile, and owner.test@kilat.my; a
    second run reuses them."""
    for _ in range(2):
        await platform.kilat("seed-demo", "--base-url", platform.base_url, "--runners", "1")
    assert platform.sql("SELECT count(*) AS n FROM users WHERE email IN "
                        "('runner.test@kilat.my', 'owner.test@kilat.my')")[0]["n"] == 2
    status, body = await client.post("/api/v1/auth/login", {"email": "runner.test@kilat.my",
                                                            "password": "TestRunner123!"})
    auth = data_of(status, body)
    check_auth(auth, "runner")
    client.token = auth["access_token"]
    status, body = await client.get("/api/v1/runners/me")
    me = data_of(status, body)
    check_runner(me)
    assert me["session_status"] == "active" and me["user_id"] == auth["user"]["id"]
    status, body = await client.get("/api/v1/bookings?status=requested&page=1&limit=20")
    page_of(status, body)
    status, body = await client.post("/api/v1/auth/login", {"email": "owner.test@kilat.my",
                                                            "password": "TestOwner123!"})
    check_auth(data_of(status, body), "owner")
