"""Pet shops through the gateway: owner CRUD, listing, category filter, nearby search, seed."""

from __future__ import annotations

import random
import uuid

from core.db import Database
from core.security import issue_access_token
from stores.runner import DEMO_SHOPS, seed_demo_shops
from tests.conftest import Client
from tests.platform import Platform, wait_until
from tests.test_runner import admin_client, project

SHOP_KEYS = {"id", "owner_id", "name", "address", "latitude", "longitude", "phone", "email",
             "category", "services", "rating", "image_url", "opening_hours", "description",
             "created_at"}


def shop_body(**over) -> dict:
    body = {"name": f"Shop {uuid.uuid4().hex[:6]}", "phone": "+60312345678",
            "email": "hello@shop.test", "category": "grooming", "description": "We groom.",
            "address": "1 Jalan Test, Kuala Lumpur", "latitude": 3.1466, "longitude": 101.7108,
            "services": ["bath", "trim"], "opening_hours": "09:00-18:00",
            "image_url": "https://img.test/shop.png"}
    body.update(over)
    return body


def bad_key(field: str, tag: str, model: str = "CreateShopRequest") -> dict:
    go = "".join(p.title() for p in field.split("_"))
    return {"success": False, "error": f"Key: '{model}.{go}' Error:Field validation for "
                                       f"'{go}' failed on the '{tag}' tag"}


def shop_not_found(shop_id: str) -> dict:
    return {"success": False, "error": "PetShop not found",
            "detail": f"PetShop with id '{shop_id}' was not found"}


async def test_shop_owner_crud(platform, http, new_client) -> None:
    shop = await new_client("shop")
    status, body = await shop.post("/api/v1/petshops", shop_body(name="Furry Friends"))
    assert status == 201, body
    dto = body["data"]
    assert set(dto) == SHOP_KEYS
    assert dto["owner_id"] == shop.user["id"] and dto["name"] == "Furry Friends"
    assert (dto["latitude"], dto["longitude"]) == (3.1466, 101.7108)
    assert dto["rating"] == 0 and dto["services"] == ["bath", "trim"]
    shop_id = dto["id"]
    rows = platform.sql("SELECT ST_AsText(location::geometry) AS wkt, "
                        "GeometryType(location::geometry) AS kind FROM pet_shops WHERE id = %s",
                        (shop_id,))
    assert rows == [{"wkt": "POINT(101.7108 3.1466)", "kind": "POINT"}]

    owner = await new_client("owner")
    status, body = await owner.get(f"/api/v1/petshops/{shop_id}")
    assert (status, body) == (200, {"success": True, "data": dto})

    # Partial update: zero values leave fields alone; one coordinate moves the shop.
    status, body = await shop.put(f"/api/v1/petshops/{shop_id}",
                                  {"name": "Furry Friends KL", "phone": "", "latitude": 3.2,
                                   "category": "", "longitude": 0})
    assert status == 200, body
    upd = body["data"]
    assert upd["name"] == "Furry Friends KL" and upd["phone"] == dto["phone"]
    assert (upd["latitude"], upd["longitude"]) == (3.2, 101.7108)
    assert upd["category"] == "grooming" and upd["services"] == ["bath", "trim"]
    status, body = await shop.put(f"/api/v1/petshops/{shop_id}",
                                  {"category": "vet", "services": [], "image_url": ""})
    assert status == 200 and body["data"]["category"] == "vet" and body["data"]["services"] == []
    assert body["data"]["image_url"] == dto["image_url"]
    status, body = await shop.put(f"/api/v1/petshops/{shop_id}", {"category": "zoo"})
    assert (status, body) == (400, bad_key("category", "oneof", "UpdateShopRequest"))
    status, body = await shop.put(f"/api/v1/petshops/{shop_id}", {"latitude": 100})
    assert (status, body) == (400, {"success": False, "error": "invalid latitude"})

    # Another shop account may neither edit nor delete it; an owner has no shop role.
    rival = await new_client("shop")
    status, body = await rival.put(f"/api/v1/petshops/{shop_id}", {"name": "Mine now"})
    assert (status, body) == (403, {"success": False, "error": "you do not own this pet shop",
                                    "detail": ""})
    status, body = await rival.delete(f"/api/v1/petshops/{shop_id}")
    assert status == 403 and body["error"] == "you do not own this pet shop"
    status, body = await owner.put(f"/api/v1/petshops/{shop_id}", {"name": "x"})
    assert (status, body) == (403, {"error": "insufficient permissions"})
    assert platform.sql("SELECT name FROM pet_shops WHERE id = %s", (shop_id,)) == \
        [{"name": "Furry Friends KL"}]

    status, body = await shop.delete(f"/api/v1/petshops/{shop_id}")
    assert (status, body) == (200, {"success": True, "data": {"message": "pet shop deleted"}})
    assert platform.sql("SELECT id FROM pet_shops WHERE id = %s", (shop_id,)) == []
    status, body = await shop.get(f"/api/v1/petshops/{shop_id}")
    assert (status, body) == (404, {"success": False, "error": "not found"})
    status, body = await shop.delete(f"/api/v1/petshops/{shop_id}")
    assert (status, body) == (404, shop_not_found(shop_id))
    status, body = await shop.put(f"/api/v1/petshops/{shop_id}", {"name": "ghost"})
    assert (status, body) == (404, shop_not_found(shop_id))
    status, body = await shop.get("/api/v1/petshops/not-a-uuid")
    assert (status, body) == (400, {"success": False, "error": "invalid pet shop ID"})


async def test_admin_may_edit_and_delete_any_shop(platform, http, new_client) -> None:
    shop = await new_client("shop")
    admin = admin_client(platform, http)
    status, body = await shop.post("/api/v1/petshops", shop_body())
    shop_id = body["data"]["id"]
    status, body = await admin.put(f"/api/v1/petshops/{shop_id}", {"description": "Checked."})
    assert status == 200 and body["data"]["description"] == "Checked."
    assert body["data"]["owner_id"] == shop.user["id"]
    status, body = await admin.delete(f"/api/v1/petshops/{shop_id}")
    assert (status, body) == (200, {"success": True, "data": {"message": "pet shop deleted"}})


async def test_create_validation_and_roles(platform, http, new_client) -> None:
    shop = await new_client("shop")
    for patch, expected in [
        ({"name": ""}, bad_key("name", "required")),
        ({"address": ""}, bad_key("address", "required")),
        ({"category": "zoo"}, bad_key("category", "oneof")),
        ({"category": None}, None),
        ({"latitude": -91}, {"success": False, "error": "invalid latitude"}),
        ({"longitude": 181}, {"success": False, "error": "invalid longitude"}),
        ({"phone": "1" * 21}, bad_key("phone", "max")),
    ]:
        status, body = await shop.post("/api/v1/petshops", shop_body(**patch))
        assert status == 400, (patch, body)
        if expected:
            assert body == expected, patch
    no_lat = {k: v for k, v in shop_body().items() if k != "latitude"}
    status, body = await shop.post("/api/v1/petshops", no_lat)
    assert (status, body) == (400, bad_key("latitude", "required"))
    # Optional fields may be left out; image_url is then omitted from the DTO.
    status, body = await shop.post("/api/v1/petshops", {
        "name": "Minimal", "address": "2 Jalan", "latitude": 3.1, "longitude": 101.6,
        "category": "pet_store"})
    assert status == 201, body
    assert "image_url" not in body["data"] and body["data"]["services"] == []
    assert body["data"]["phone"] == "" and body["data"]["opening_hours"] == ""

    runner = await new_client("runner")
    status, body = await runner.post("/api/v1/petshops", shop_body())
    assert (status, body) == (403, {"error": "insufficient permissions"})
    status, body = await runner.get("/api/v1/petshops/mine")
    assert (status, body) == (403, {"error": "insufficient permissions"})
    status, body = await Client(http, platform.base_url).get("/api/v1/petshops")
    assert status == 401


async def test_mine_lists_newest_first(platform, http, new_client) -> None:
    shop = await new_client("shop")
    ids = []
    for i in range(3):
        status, body = await shop.post("/api/v1/petshops", shop_body(name=f"Branch {i}"))
        assert status == 201
        ids.append(body["data"]["id"])
    other = await new_client("shop")
    await other.post("/api/v1/petshops", shop_body())
    status, body = await shop.get("/api/v1/petshops/mine")
    assert status == 200
    assert [s["id"] for s in body["data"]] == ids[::-1]
    status, body = await (await new_client("shop")).get("/api/v1/petshops/mine")
    assert (status, body) == (200, {"success": True, "data": []})


async def test_list_orders_by_rating_then_name_and_filters_category(platform, http, new_client) -> None:
    shop = await new_client("shop")
    tag = uuid.uuid4().hex[:6]
    made = {}
    for name, category, rating in [(f"B {tag}", "vet", 4.5), (f"A {tag}", "vet", 4.5),
                                   (f"C {tag}", "boarding", 4.9), (f"D {tag}", "vet", 3.0)]:
        status, body = await shop.post("/api/v1/petshops", shop_body(name=name, category=category))
        made[name] = body["data"]["id"]
        # Ratings come from reviews; set them directly here.
        platform.sql("UPDATE pet_shops SET rating = %s WHERE id = %s", (rating, made[name]))

    status, body = await shop.get("/api/v1/petshops")
    assert status == 200
    mine = [s["name"] for s in body["data"] if s["name"].endswith(tag)]
    assert mine == [f"C {tag}", f"A {tag}", f"B {tag}", f"D {tag}"]
    ratings = [(-s["rating"], s["name"]) for s in body["data"]]
    assert ratings == sorted(ratings)
    assert len(body["data"]) <= 50

    status, body = await shop.get("/api/v1/petshops?category=vet")
    assert status == 200
    assert {s["category"] for s in body["data"]} == {"vet"}
    assert [s["name"] for s in body["data"] if s["name"].endswith(tag)] == \
        [f"A {tag}", f"B {tag}", f"D {tag}"]
    assert body["data"][0]["rating"] >= body["data"][-1]["rating"]

    status, body = await shop.get("/api/v1/petshops?category=zoo")
    assert (status, body) == (200, {"success": True, "data": []})


async def test_list_is_capped_at_50(platform, http, new_client) -> None:
    shop = await new_client("shop")
    for i in range(51):
        status, _ = await shop.post("/api/v1/petshops", shop_body(name=f"Bulk {i:02d}",
                                                                  category="pet_store"))
        assert status == 201
    status, body = await shop.get("/api/v1/petshops?category=pet_store")
    assert status == 200 and len(body["data"]) == 50


async def test_nearby_shops_default_radius_10km_nearest_first(platform, http, new_client) -> None:
    lat0, lng0 = 6.0 + random.random(), 116.0 + random.random()
    shop = await new_client("shop")
    ids = {}
    for km, bearing in [(12, 10), (4, 100), (0.25, 250), (9, 45)]:
        lat, lng = project(platform, lat0, lng0, km * 1000, bearing)
        status, body = await shop.post("/api/v1/petshops", shop_body(latitude=lat, longitude=lng))
        assert status == 201
        ids[km] = body["data"]["id"]
        assert (body["data"]["latitude"], body["data"]["longitude"]) == (lat, lng)

    owner = await new_client("owner")
    status, body = await owner.get(f"/api/v1/petshops/nearby?latitude={lat0}&longitude={lng0}")
    assert status == 200, body
    assert [s["id"] for s in body["data"]] == [ids[0.25], ids[4], ids[9]]
    assert set(body["data"][0]) == SHOP_KEYS
    status, body = await owner.get(
        f"/api/v1/petshops/nearby?latitude={lat0}&longitude={lng0}&radius_km=15")
    assert [s["id"] for s in body["data"]] == [ids[0.25], ids[4], ids[9], ids[12]]
    status, body = await owner.get(
        f"/api/v1/petshops/nearby?latitude={lat0}&longitude={lng0}&radius_km=1")
    assert [s["id"] for s in body["data"]] == [ids[0.25]]
    for query, error in [(f"longitude={lng0}", "invalid latitude"),
                         (f"latitude={lat0}&longitude=x", "invalid longitude"),
                         (f"latitude={lat0}&longitude={lng0}&radius_km=0", "invalid radius"),
                         (f"latitude={lat0}&longitude={lng0}&radius_km=1000", "invalid radius")]:
        status, body = await owner.get("/api/v1/petshops/nearby?" + query)
        assert (status, body) == (400, {"success": False, "error": error}), query


async def test_nearby_shops_limit_20(platform, http, new_client) -> None:
    lat0, lng0 = -6.0 - random.random(), 106.0 + random.random()
    shop = await new_client("shop")
    ids = []
    for i in range(21):
        lat, lng = project(platform, lat0, lng0, 200 * (i + 1), i * 33)
        status, body = await shop.post("/api/v1/petshops", shop_body(latitude=lat, longitude=lng))
        ids.append(body["data"]["id"])
    status, body = await shop.get(f"/api/v1/petshops/nearby?latitude={lat0}&longitude={lng0}")
    assert [s["id"] for s in body["data"]] == ids[:20]


async def test_seed_demo_shops_once_into_empty_table(fresh_platform: Platform) -> None:
    db = Database(fresh_platform.database_url, maxsize=1)
    try:
        async with db.transaction() as conn:
            assert await seed_demo_shops(conn) == 7
        async with db.transaction() as conn:
            assert await seed_demo_shops(conn) == 0
    finally:
        await db.close()
    rows = fresh_platform.sql(
        "SELECT name, category, rating::float AS rating, owner_id, ST_Y(location::geometry) AS lat, "
        "ST_X(location::geometry) AS lng FROM pet_shops ORDER BY name")
    assert len(rows) == len(DEMO_SHOPS) == 7
    paws = next(r for r in rows if r["name"] == "Paws & Claws Grooming")
    assert (paws["lat"], paws["lng"], paws["rating"], paws["owner_id"]) == (3.1466, 101.7108, 4.5, None)
    assert next(r for r in rows if r["name"] == "Meow Manor Cat Hotel")["rating"] == 4.8
    assert {r["category"] for r in rows} == {"grooming", "vet", "boarding", "pet_store"}


async def test_development_workers_seed_the_demo_shops_once(fresh_platform: Platform,
                                                            http) -> None:
    """Two development workers starting together: the seven demo shops, once, listed by the
    API; a test deployment (every other test) starts with none."""
    p = fresh_platform
    workers = [p.start_worker(name, KILAT_ENV="development") for name in ("w1", "w2")]
    for worker in workers:
        await p.wait_ready(worker)

    async def seeded() -> bool:
        return p.sql("SELECT count(*) AS n FROM pet_shops")[0]["n"] == len(DEMO_SHOPS)
    await wait_until(seeded, 30, what="demo shops seeded")
    owner = Client(http, workers[0].url, issue_access_token(str(uuid.uuid4()),
                                                            "owner@kilat.test", "owner"))
    status, body = await owner.get("/api/v1/petshops")
    assert status == 200 and sorted(s["name"] for s in body["data"]) == sorted(
        s["name"] for s in DEMO_SHOPS)

    async def both_started() -> bool:
        return all("demo pet shops seeded" in w.log_path.read_text(errors="replace")
                   for w in workers)
    await wait_until(both_started, 30, what="both workers' start-up seeding")
    assert p.sql("SELECT count(*) AS n FROM pet_shops")[0]["n"] == len(DEMO_SHOPS)
