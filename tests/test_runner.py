"""Runner domain through the gateway: profiles, presence events, GPS via the agent, crates,
nearby search on PostGIS."""

from __future__ import annotations

import math
import random
import uuid

import aiohttp

from core.security import issue_access_token
from tests.conftest import Client
from tests.platform import Platform, wait_until
from tests.test_booking import book

VEHICLE = {"vehicle_type": "car", "vehicle_plate": "WXY 1234", "vehicle_model": "Perodua Myvi",
           "vehicle_year": 2021, "air_conditioned": True}
RUNNER_KEYS = {"id", "user_id", "full_name", "phone", "vehicle_type", "vehicle_plate",
               "vehicle_model", "air_conditioned", "session_status", "rating", "total_trips",
               "created_at"}
# What other users see of a runner (nearby search, profile without a contact right).
PUBLIC_KEYS = RUNNER_KEYS - {"phone", "vehicle_plate"}


def admin_client(platform: Platform, http: aiohttp.ClientSession) -> Client:
    """Admins cannot sign up (DESIGN fix 5): a token minted with the platform's secret."""
    uid = str(uuid.uuid4())
    c = Client(http, platform.base_url, issue_access_token(uid, f"admin-{uid[:8]}@kilat.test", "admin"))
    c.user = {"id": uid, "role": "admin"}
    return c


async def runner_with_profile(new_client, **vehicle) -> Client:
    c = await new_client("runner")
    status, body = await c.post("/api/v1/runners", {**VEHICLE, **vehicle})
    assert status == 201, body
    c.profile = body["data"]  # type: ignore[attr-defined]
    return c


def validation(field: str, tag: str, model: str = "RegisterRunnerRequest") -> dict:
    go = "".join(p.title() for p in field.split("_"))
    return {"success": False, "error": f"Key: '{model}.{go}' Error:Field validation for "
                                       f"'{go}' failed on the '{tag}' tag"}


def not_found(user_id: str) -> dict:
    return {"success": False, "error": "runner not found",
            "detail": f"runner with id '{user_id}' was not found"}


# ------------------------------------------------------------------ profile

async def test_register_runner_defaults_name_and_phone_from_account(platform, http, new_client) -> None:
    c = await new_client("runner")
    uid = c.user["id"]
    # The web runner dashboard's body: no full_name, no phone.
    status, body = await c.post("/api/v1/runners", VEHICLE)
    assert status == 201, body
    dto = body["data"]
    assert set(dto) == RUNNER_KEYS  # no crate_specs, no distance_km, no vehicle_year
    assert dto["user_id"] == uid and dto["id"] != uid
    # Copied from the user's account.
    assert dto["full_name"] == "Test Runner" and dto["phone"] == "+60123456789"
    assert dto["session_status"] == "inactive" and dto["rating"] == 0 and dto["total_trips"] == 0
    assert dto["vehicle_type"] == "car" and dto["air_conditioned"] is True
    assert dto["created_at"].endswith("Z")

    status, body = await c.post("/api/v1/runners", {**VEHICLE, "full_name": "X", "phone": "1"})
    assert (status, body) == (409, {"success": False, "detail": "",
                                    "error": f"runner with user_id '{uid}' already exists"})

    status, body = await c.get("/api/v1/runners/me")
    assert status == 200 and body == {"success": True, "data": dto}


async def test_register_runner_without_account_falls_back_to_email(platform, http) -> None:
    uid = str(uuid.uuid4())
    c = Client(http, platform.base_url, issue_access_token(uid, "ghost@kilat.test", "runner"))
    status, body = await c.post("/api/v1/runners", VEHICLE)
    assert status == 201, body
    assert (body["data"]["full_name"], body["data"]["phone"]) == ("ghost@kilat.test", "")


async def test_register_runner_with_explicit_name_and_validation(platform, http, new_client) -> None:
    c = await new_client("runner")
    for patch, field, tag in [
        ({"vehicle_type": ""}, "vehicle_type", "required"),
        ({"vehicle_type": "X" * 21}, "vehicle_type", "max"),
        ({"vehicle_plate": ""}, "vehicle_plate", "required"),
        ({"vehicle_model": None}, "vehicle_model", "string_type"),
        ({"vehicle_plate": "X" * 21}, "vehicle_plate", "max"),
    ]:
        status, body = await c.post("/api/v1/runners", {**VEHICLE, **patch})
        assert status == 400, (patch, body)
        if tag == "string_type":
            assert body["success"] is False and "VehicleModel" in body["error"]
        else:
            assert body == validation(field, tag), patch
    body_without_plate = {k: v for k, v in VEHICLE.items() if k != "vehicle_plate"}
    status, body = await c.post("/api/v1/runners", body_without_plate)
    assert (status, body) == (400, validation("vehicle_plate", "required"))
    status, body = await c.call("POST", "/api/v1/runners", data=b"{oops",
                                headers={"Content-Type": "application/json"})
    assert (status, body) == (400, {"success": False, "error": "invalid request body"})

    status, body = await c.post("/api/v1/runners", {**VEHICLE, "vehicle_type": "motorbike",
                                                    "full_name": "Aminah Rahman",
                                                    "phone": "+60198765432"})
    assert status == 201, body
    assert body["data"]["full_name"] == "Aminah Rahman" and body["data"]["phone"] == "+60198765432"
    rows = platform.sql("SELECT vehicle_year, vehicle_type FROM runners WHERE user_id = %s",
                        (c.user["id"],))
    assert rows == [{"vehicle_year": 2021, "vehicle_type": "motorbike"}]


async def test_vehicle_year_is_optional(platform, new_client) -> None:
    """The runner web app labels the year optional and leaves it out: missing, null and 0
    (Go's "not given") are stored as NULL; a negative year is still refused."""
    without = {k: v for k, v in VEHICLE.items() if k != "vehicle_year"}
    for body in (without, {**without, "vehicle_year": None}, {**without, "vehicle_year": 0}):
        c = await new_client("runner")
        status, resp = await c.post("/api/v1/runners", body)
        assert status == 201, (body, resp)
        assert set(resp["data"]) == RUNNER_KEYS
        rows = platform.sql("SELECT vehicle_year FROM runners WHERE user_id = %s",
                            (c.user["id"],))
        assert rows == [{"vehicle_year": None}]
        status, resp = await c.put("/api/v1/runners/me", {"vehicle_year": 2019})
        assert status == 200, resp
        assert platform.sql("SELECT vehicle_year FROM runners WHERE user_id = %s",
                            (c.user["id"],)) == [{"vehicle_year": 2019}]
    c = await new_client("runner")
    status, resp = await c.post("/api/v1/runners", {**without, "vehicle_year": -1})
    assert status == 400 and resp["success"] is False and "VehicleYear" in resp["error"], resp


async def test_roles_and_missing_profile(platform, http, new_client) -> None:
    owner = await new_client("owner")
    status, body = await owner.post("/api/v1/runners", VEHICLE)
    assert (status, body) == (403, {"error": "insufficient permissions"})
    status, body = await owner.get("/api/v1/runners/me")
    assert (status, body) == (403, {"error": "insufficient permissions"})
    anon = Client(http, platform.base_url)
    status, body = await anon.get("/api/v1/runners/me")
    assert (status, body) == (401, {"error": "authorization header is required"})

    c = await new_client("runner")
    uid = c.user["id"]
    for method, path, payload in [
        ("GET", "/api/v1/runners/me", None),
        ("PUT", "/api/v1/runners/me", {"vehicle_model": "Axia"}),
        ("POST", "/api/v1/runners/me/online", {"latitude": 3.1, "longitude": 101.6}),
        ("POST", "/api/v1/runners/me/offline", None),
        ("POST", "/api/v1/runners/me/location", {"latitude": 3.1, "longitude": 101.6}),
        ("POST", "/api/v1/runners/me/crates", {"size": "small", "pet_types": ["cat"],
                                               "max_weight_kg": 5}),
    ]:
        status, body = await c.call(method, path, payload)
        assert (status, body) == (404, not_found(uid)), (method, path)


async def test_update_profile_is_partial(platform, http, new_client) -> None:
    c = await runner_with_profile(new_client)
    before = c.profile  # type: ignore[attr-defined]
    status, body = await c.put("/api/v1/runners/me", {"vehicle_model": "Proton X50",
                                                      "full_name": "", "air_conditioned": False,
                                                      "vehicle_year": 2024})
    assert status == 200, body
    after = body["data"]
    assert after["vehicle_model"] == "Proton X50" and after["air_conditioned"] is False
    assert after["full_name"] == before["full_name"]
    assert {k: v for k, v in after.items() if k not in ("vehicle_model", "air_conditioned")} == \
        {k: v for k, v in before.items() if k not in ("vehicle_model", "air_conditioned")}
    rows = platform.sql("SELECT vehicle_year, version FROM runners WHERE user_id = %s",
                        (c.user["id"],))
    assert rows == [{"vehicle_year": 2024, "version": 2}]
    # vehicle_type is free text, as in the original
    status, body = await c.put("/api/v1/runners/me", {"vehicle_type": "scooter"})
    assert status == 200 and body["data"]["vehicle_type"] == "scooter", body
    status, body = await c.put("/api/v1/runners/me", {"vehicle_type": "X" * 21})
    assert (status, body) == (400, validation("vehicle_type", "max", "UpdateRunnerRequest"))
    status, body = await c.put("/api/v1/runners/me", {})
    assert status == 200 and body["data"]["vehicle_model"] == "Proton X50"


async def test_crates(platform, http, new_client) -> None:
    c = await runner_with_profile(new_client)
    crate = {"size": "medium", "pet_types": ["cat", "dog"], "max_weight_kg": 15.5,
             "width_cm": 60, "height_cm": 45, "depth_cm": 40, "ventilated": True,
             "temperature_controlled": False}
    status, body = await c.post("/api/v1/runners/me/crates", crate)
    assert status == 201, body
    dto = body["data"]
    assert set(dto) == {"id", *crate}
    assert {k: dto[k] for k in crate} == crate
    status, body = await c.post("/api/v1/runners/me/crates",
                                {"size": "small", "pet_types": ["bird"], "max_weight_kg": 2})
    assert status == 201
    assert body["data"]["width_cm"] == 0 and body["data"]["ventilated"] is False

    status, body = await c.get("/api/v1/runners/me")
    assert status == 200
    assert [s["size"] for s in body["data"]["crate_specs"]] == ["medium", "small"]
    assert body["data"]["crate_specs"][0] == dto

    for patch, field, tag in [({"size": ""}, "size", "required"),
                              ({"max_weight_kg": 0}, "max_weight_kg", "required"),
                              ({"max_weight_kg": -3}, "max_weight_kg", "gt"),
                              ({"width_cm": -1}, "width_cm", "gte")]:
        status, body = await c.post("/api/v1/runners/me/crates", {**crate, **patch})
        assert (status, body) == (400, validation(field, tag, "CrateRequest")), patch
    status, body = await c.post("/api/v1/runners/me/crates", {"size": "small", "max_weight_kg": 1})
    assert (status, body) == (400, validation("pet_types", "required", "CrateRequest"))
    # Each change publishes the runner's crates (job offers keep them; no query per booking).
    async def two_updates():
        found = await platform.events_of("runner.events", "runner.crates_updated",
                                         runner_id=c.user["id"])
        return found if len(found) >= 2 else None
    updates = await wait_until(two_updates, 30, what="two crates_updated events")
    assert [[k["size"] for k in e["data"]["crates"]] for e in updates] == [
        ["medium"], ["medium", "small"]]
    assert updates[0]["data"]["crates"] == [{
        "size": "medium", "pet_types": ["cat", "dog"], "max_weight_kg": 15.5, "ventilated": True,
        "temperature_controlled": False}]
    # No enum on the size, as in the original: apps name their crates their own way.
    status, body = await c.post("/api/v1/runners/me/crates", {**crate, "size": "XL airline"})
    assert status == 201 and body["data"]["size"] == "XL airline"


# ------------------------------------------------------------------ presence and GPS

async def test_online_offline_write_rows_and_events_keyed_by_user_id(platform, http, new_client) -> None:
    c = await runner_with_profile(new_client)
    uid = c.user["id"]
    status, body = await c.post("/api/v1/runners/me/online", {"latitude": 3.139, "longitude": 101.6869})
    assert (status, body) == (200, {"success": True, "data": {"message": "runner is now online"}})
    assert platform.sql("SELECT session_status FROM runners WHERE user_id = %s", (uid,)) == \
        [{"session_status": "active"}]
    rows = platform.sql("SELECT ST_Y(location::geometry) AS lat, ST_X(location::geometry) AS lng "
                        "FROM runner_locations WHERE runner_id = %s", (uid,))
    assert rows == [{"lat": 3.139, "lng": 101.6869}]
    status, body = await c.get("/api/v1/runners/me")
    assert body["data"]["session_status"] == "active"

    [online] = await platform.wait_event("runner.events", "runner.online", runner_id=uid)
    assert online["_key"] == uid and online["source"] == "service-runner"
    assert set(online["data"]) == {"runner_id", "latitude", "longitude", "crates", "occurred_at"}
    assert online["data"]["crates"] == []  # what job offers know the runner can carry
    assert (online["data"]["latitude"], online["data"]["longitude"]) == (3.139, 101.6869)

    status, body = await c.post("/api/v1/runners/me/offline")
    assert (status, body) == (200, {"success": True, "data": {"message": "runner is now offline"}})
    assert platform.sql("SELECT session_status FROM runners WHERE user_id = %s", (uid,)) == \
        [{"session_status": "inactive"}]
    [offline] = await platform.wait_event("runner.events", "runner.offline", runner_id=uid)
    assert offline["_key"] == uid and set(offline["data"]) == {"runner_id", "occurred_at"}
    # Same key → same partition → offline is read after online.
    assert offline["_partition"] == online["_partition"] and offline["_offset"] > online["_offset"]

    for payload, error in [({"latitude": 91, "longitude": 101.6}, "invalid latitude"),
                           ({"latitude": 3.1, "longitude": -181}, "invalid longitude")]:
        status, body = await c.post("/api/v1/runners/me/online", payload)
        assert (status, body) == (400, {"success": False, "error": error})
    status, body = await c.post("/api/v1/runners/me/online", {"latitude": 3.1})
    assert (status, body) == (400, validation("longitude", "required", "OnlineRequest"))


async def test_location_update_reaches_postgis_through_gps_agent(platform, http, new_client) -> None:
    c = await runner_with_profile(new_client)
    uid = c.user["id"]
    fix = {"latitude": 3.15, "longitude": 101.71, "speed_kmh": 32.5, "heading_degrees": 270}

    status, body = await c.post("/api/v1/runners/me/location", fix)
    assert (status, body) == (400, {"success": False, "detail": "",
                                    "error": "runner must be online to update location"})
    assert await platform.events_of("runner.events", "runner.location_update", runner_id=uid) == []

    assert (await c.post("/api/v1/runners/me/online", {"latitude": 3.14, "longitude": 101.69}))[0] == 200
    status, body = await c.post("/api/v1/runners/me/location", fix)
    assert (status, body) == (200, {"success": True, "data": {"message": "location updated"}})

    async def moved():
        rows = platform.sql(
            "SELECT ST_Y(location::geometry) AS lat, ST_X(location::geometry) AS lng, speed_kmh, "
            "heading_degrees FROM runner_locations WHERE runner_id = %s", (uid,))
        return rows if rows and rows[0]["lat"] == 3.15 else None

    rows = await wait_until(moved, 30, what="GPS agent wrote the fix")
    assert rows == [{"lat": 3.15, "lng": 101.71, "speed_kmh": 32.5, "heading_degrees": 270.0}]
    [event] = await platform.events_of("runner.events", "runner.location_update", runner_id=uid)
    assert event["_key"] == uid
    assert set(event["data"]) == {"runner_id", "latitude", "longitude", "speed_kmh",
                                  "heading_degrees", "timestamp", "occurred_at"}
    assert event["data"]["timestamp"] == event["data"]["occurred_at"]

    for payload, error in [({**fix, "latitude": -90.5}, "invalid latitude"),
                           ({**fix, "longitude": 180.01}, "invalid longitude")]:
        status, body = await c.post("/api/v1/runners/me/location", payload)
        assert (status, body) == (400, {"success": False, "error": error}), payload

    # A device's "unknown" speed/course (-1 on iOS) is kept as 0, like the original's waypoints.
    status, body = await c.post("/api/v1/runners/me/location",
                                {**fix, "latitude": 3.16, "speed_kmh": -1, "heading_degrees": -1})
    assert (status, body) == (200, {"success": True, "data": {"message": "location updated"}})
    [event] = await platform.events_of("runner.events", "runner.location_update", runner_id=uid,
                                       latitude=3.16)
    assert (event["data"]["speed_kmh"], event["data"]["heading_degrees"]) == (0, 0)

    assert (await c.post("/api/v1/runners/me/offline"))[0] == 200
    status, body = await c.post("/api/v1/runners/me/location", fix)
    assert status == 400 and body["error"] == "runner must be online to update location"


# ------------------------------------------------------------------ nearby search

def project(platform: Platform, lat: float, lng: float, metres: float, bearing_deg: float):
    """The point `metres` away from (lat, lng) along `bearing_deg`, on the WGS84 spheroid."""
    [row] = platform.sql(
        "SELECT ST_Y(p::geometry) AS lat, ST_X(p::geometry) AS lng FROM (SELECT ST_Project("
        "ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, %s, radians(%s)) AS p) q",
        (lng, lat, metres, bearing_deg))
    return row["lat"], row["lng"]


async def test_nearby_runners_nearest_first_within_radius(platform, http, new_client) -> None:
    # A centre of our own, so runners of other tests are not in range.
    lat0, lng0 = 4.0 + random.random(), 100.5 + random.random() / 2
    placed = {}
    for km, bearing, ac in [(7, 200, False), (1, 30, True), (3, 120, False), (0.5, 300, True)]:
        c = await runner_with_profile(new_client, air_conditioned=ac,
                                      vehicle_model=f"model-{km}")
        lat, lng = project(platform, lat0, lng0, km * 1000, bearing)
        assert (await c.post("/api/v1/runners/me/online", {"latitude": lat, "longitude": lng}))[0] == 200
        placed[km] = c
    # Offline runners are never offered, whatever their last position.
    assert (await placed[0.5].post("/api/v1/runners/me/offline"))[0] == 200
    owner = await new_client("owner")

    status, body = await owner.get(f"/api/v1/runners/nearby?latitude={lat0}&longitude={lng0}")
    assert status == 200, body
    found = body["data"]
    assert [r["user_id"] for r in found] == [placed[1].user["id"], placed[3].user["id"]]
    # Distances to the stand-in points (70-330 m from the truth), in 0.1 km steps.
    assert all(abs(r["distance_km"] - km) <= 0.4 for r, km in zip(found, (1, 3), strict=True))
    assert all(round(r["distance_km"], 1) == r["distance_km"] for r in found)
    # What an owner needs to choose, nothing to find or call the runner with (DESIGN 14).
    profile = placed[1].profile
    assert found[0] == {**{k: profile[k] for k in PUBLIC_KEYS if k in profile},
                        "full_name": profile["full_name"].split()[0],
                        "session_status": "active", "distance_km": found[0]["distance_km"]}

    status, body = await owner.get(
        f"/api/v1/runners/nearby?latitude={lat0}&longitude={lng0}&radius_km=10")
    assert status == 200
    assert [r["user_id"] for r in body["data"]] == [
        placed[1].user["id"], placed[3].user["id"], placed[7].user["id"]]
    assert all(abs(r["distance_km"] - km) <= 0.4 for r, km in zip(body["data"], (1, 3, 7),
                                                                  strict=True))
    assert all("crate_specs" not in r for r in body["data"])

    status, body = await owner.get(
        f"/api/v1/runners/nearby?latitude={lat0}&longitude={lng0}&radius_km=0.5")
    assert (status, body) == (200, {"success": True, "data": []})

    base = "/api/v1/runners/nearby?"
    for query, error in [
        (f"longitude={lng0}", "invalid latitude"),
        (f"latitude=abc&longitude={lng0}", "invalid latitude"),
        (f"latitude=95&longitude={lng0}", "invalid latitude"),
        (f"latitude={lat0}", "invalid longitude"),
        (f"latitude={lat0}&longitude=200", "invalid longitude"),
        (f"latitude={lat0}&longitude={lng0}&radius_km=0", "invalid radius"),
        (f"latitude={lat0}&longitude={lng0}&radius_km=-2", "invalid radius"),
        (f"latitude={lat0}&longitude={lng0}&radius_km=100.5", "invalid radius"),
        (f"latitude={lat0}&longitude={lng0}&radius_km=ten", "invalid radius"),
        (f"latitude={lat0}&longitude={lng0}&radius_km=nan", "invalid radius"),
    ]:
        status, body = await owner.get(base + query)
        assert (status, body) == (400, {"success": False, "error": error}), query
    status, body = await Client(http, platform.base_url).get(
        base + f"latitude={lat0}&longitude={lng0}")
    assert status == 401


async def test_nearby_runners_limit_20(platform, http, new_client) -> None:
    lat0, lng0 = -2.0 - random.random(), 110.0 + random.random()
    ids = []
    for i in range(21):  # 1 km apart: more than stand-in points can reorder
        c = await runner_with_profile(new_client)
        lat, lng = project(platform, lat0, lng0, 1000 + i * 1000, i * 17)
        assert (await c.post("/api/v1/runners/me/online", {"latitude": lat, "longitude": lng}))[0] == 200
        ids.append(c.user["id"])
    status, body = await c.get(
        f"/api/v1/runners/nearby?latitude={lat0}&longitude={lng0}&radius_km=30")
    assert status == 200
    assert [r["user_id"] for r in body["data"]] == ids[:20]
    assert all(abs(r["distance_km"] - (i + 1)) <= 0.4 for i, r in enumerate(body["data"]))


# ------------------------------------------------------------------ privacy (DESIGN 14)

M_PER_DEG = 111_195.0


def offset_point(lat: float, lng: float, metres: float, bearing_deg: float) -> tuple[float, float]:
    """A point `metres` from (lat, lng) along `bearing_deg` (flat approximation, fine at km)."""
    b = math.radians(bearing_deg)
    return (lat + metres * math.cos(b) / M_PER_DEG,
            lng + metres * math.sin(b) / (M_PER_DEG * math.cos(math.radians(lat))))


def to_metres(origin: tuple[float, float], p: tuple[float, float]) -> tuple[float, float]:
    return ((p[1] - origin[1]) * M_PER_DEG * math.cos(math.radians(origin[0])),
            (p[0] - origin[0]) * M_PER_DEG)


async def test_nearby_cannot_be_trilaterated(platform, http, new_client) -> None:
    """The strongest attack on rounded distances: from three sides, find (by bisection) where
    the shown distance flips to the next 0.1 km; there the distance to the point nearby search
    uses is exactly known, so three flips pin that point to centimetres. It must still be at
    least ~50 m from where the runner really is."""
    target = (5.0 + random.random(), 99.0 + random.random())
    runner = await runner_with_profile(new_client)
    assert (await runner.post("/api/v1/runners/me/online",
                              {"latitude": target[0], "longitude": target[1]}))[0] == 200
    spy = await new_client("owner")
    rid = runner.user["id"]

    async def shown(point: tuple[float, float]) -> float:
        status, body = await spy.get(f"/api/v1/runners/nearby?latitude={point[0]}"
                                     f"&longitude={point[1]}&radius_km=10")
        assert status == 200, body
        [me] = [r for r in body["data"] if r["user_id"] == rid]
        assert "phone" not in me and "vehicle_plate" not in me and "latitude" not in me
        return me["distance_km"]

    circles = []
    for bearing in (10.0, 130.0, 250.0):
        anchor = offset_point(*target, 1500, bearing)
        first = await shown(anchor)
        low, high = 0.0, 400.0  # metres walked from the anchor towards the target
        assert await shown(offset_point(*anchor, high, bearing + 180)) < first
        for _ in range(14):
            mid = (low + high) / 2
            if await shown(offset_point(*anchor, mid, bearing + 180)) == first:
                low = mid
            else:
                high = mid
        flip = offset_point(*anchor, (low + high) / 2, bearing + 180)
        # Where `first` turns into `first - 0.1`, the distance is exactly first - 0.05 km.
        circles.append((to_metres(target, flip), (first - 0.05) * 1000))

    # Three circles -> the point they meet at (differences of the circle equations are linear).
    (x1, y1), r1 = circles[0]
    rows = []
    for (xi, yi), ri in circles[1:]:
        rows.append((2 * (xi - x1), 2 * (yi - y1),
                     r1**2 - ri**2 + xi**2 - x1**2 + yi**2 - y1**2))
    (a1, b1, c1), (a2, b2, c2) = rows
    det = a1 * b2 - a2 * b1
    x, y = (c1 * b2 - c2 * b1) / det, (a1 * c2 - a2 * c1) / det
    error_m = math.hypot(x, y)
    # The attack did locate something (the stand-in point, within a few hundred metres)...
    assert error_m < 400, error_m
    # ...but not the runner.
    assert error_m >= 50, f"located within {error_m:.1f} m"


async def test_contact_only_for_the_owner_of_an_accepted_booking(platform, http,
                                                                new_client) -> None:
    runner = await runner_with_profile(new_client, vehicle_plate="VKL 4821")
    rid, profile = runner.user["id"], runner.profile
    owner, stranger = await new_client("owner"), await new_client("owner")
    public = {**{k: profile[k] for k in PUBLIC_KEYS}, "full_name": profile["full_name"].split()[0]}

    path = f"/api/v1/runners/{rid}"
    for who in (owner, stranger):
        assert await who.get(path) == (200, {"success": True, "data": public})
    # The profile id is accepted too.
    assert await stranger.get(f"/api/v1/runners/{profile['id']}") == (
        200, {"success": True, "data": public})

    booking = await book(owner)
    assert await owner.get(path) == (200, {"success": True, "data": public})  # not accepted yet
    assert (await runner.post(f"/api/v1/bookings/{booking['id']}/accept"))[0] == 200

    status, body = await owner.get(path)
    assert status == 200 and body["data"] == profile
    assert body["data"]["phone"] and body["data"]["vehicle_plate"] == "VKL 4821"
    assert await stranger.get(path) == (200, {"success": True, "data": public})
    assert (await runner.get(path))[1]["data"] == profile
    assert (await admin_client(platform, http).get(path))[1]["data"] == profile

    # Once the runner gives the job back, the owner's right to the contact ends with it.
    assert (await runner.post(f"/api/v1/bookings/{booking['id']}/decline",
                              {"reason": "pickup_issue"}))[0] == 200
    assert await owner.get(path) == (200, {"success": True, "data": public})

    unknown = str(uuid.uuid4())
    assert await owner.get(f"/api/v1/runners/{unknown}") == (404, not_found(unknown))
    status, body = await owner.get("/api/v1/runners/not-a-uuid")
    assert (status, body) == (400, {"success": False, "error": "invalid runner ID"})


def test_privacy_rules_without_io() -> None:
    from domain import runner as rules
    from domain.tracking import haversine_km

    rng = random.Random(14)
    for n in range(3000):
        lat, lng = rng.uniform(-70, 70), rng.uniform(-180, 180)
        spot = rules.stand_in_point(b"key", f"runner-{n}", lat, lng)
        assert 60 <= haversine_km(lat, lng, *spot) * 1000 <= 340
        # Stable while the runner stays put (no averaging), different under another key.
        assert rules.stand_in_point(b"key", f"runner-{n}", lat, lng) == spot
        assert rules.stand_in_point(b"other", f"runner-{n}", lat, lng) != spot
    assert rules.coarse_distance_km(3.0, 101.0, 3.0, 101.0) == 0.0
    assert rules.coarse_distance_km(3.0, 101.0, 3.0 + 1.234 / 111.195, 101.0) == 1.2
    assert [rules.first_name(n) for n in ("Siti Aminah", "ana@x.my", " ", None)] == [
        "Siti", "ana", "", ""]
    assert rules.may_see_contact("admin", "a", "r", False)
    assert rules.may_see_contact("runner", "r", "r", False)
    assert rules.may_see_contact("owner", "o", "r", True)
    assert not rules.may_see_contact("owner", "o", "r", False)
