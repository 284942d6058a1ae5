"""Nearby search at city scale, against the real PostGIS: 10,000 online runners (and 3,000
offline ones) and 2,000 pet shops spread over Kuala Lumpur, each query's answer compared with
a brute-force great-circle reference computed here, and each query's plan checked to walk the
spatial index nearest first (reading about as many rows as it returns, whatever the radius).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg2
import pytest

from core.db import Database, compile_statement
from domain.runner import NEARBY_LIMIT, SEARCH_MARGIN_KM
from stores import runner as store
from tests.city import LAT0, LAT1, LNG0, LNG1, seed_city
from tests.platform import Platform

ONLINE, OFFLINE, SHOPS = 10_000, 3_000, 2_000
SPHERE_KM = 6371.0088  # the sphere PostGIS measures `<->` on geography with
# The radius is checked on the spheroid (ST_DWithin), the order on the sphere: the two differ
# by less than 0.5 %, so a point within that band of the radius may fall either way.
BAND = 0.005

# (latitude, longitude, radius km): centre, edge, outside the city, tiny and huge radii.
QUERIES = [(3.10, 101.68, r) for r in (0.3, 1.0, 5.0, 10.0, 30.0, 100.0)] + [
    (LAT0, LNG0, 5.0), (LAT1, LNG1, 15.0), (3.60, 101.68, 5.0), (3.60, 101.68, 60.0)]


def great_circle_km(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (math.sin((p2 - p1) / 2) ** 2
         + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lng2 - lng1) / 2) ** 2)
    return 2 * SPHERE_KM * math.asin(math.sqrt(a))


@dataclass
class City:
    db: Database
    url: str
    runners: dict[str, tuple[float, float, bool]]  # user id -> (lat, lng, online)
    shops: dict[str, tuple[float, float]]  # shop id -> (lat, lng)


@pytest.fixture(scope="module")
def city_db(infra, tmp_path_factory) -> Iterator[Platform]:
    p = Platform(tmp_path_factory.mktemp("nearby"))
    p.create_database()
    yield p
    p.drop_database()


@pytest.fixture(scope="module")
def seeded(city_db: Platform):
    return seed_city(city_db.database_url, ONLINE, OFFLINE, SHOPS)


@pytest.fixture
async def city(city_db: Platform, seeded) -> AsyncIterator[City]:
    db = Database(city_db.database_url, maxsize=2)
    yield City(db, city_db.database_url, *seeded)
    await db.close()


def check_nearest(found: list[tuple[str, float, float]], reference: dict[str, tuple[float, float]],
                  lat: float, lng: float, radius_km: float, limit: int) -> None:
    """`found` (id, lat, lng), as answered, must be the `limit` nearest of `reference` within
    the radius, nearest first (up to the sphere/spheroid band at the radius)."""
    distances = [great_circle_km(lat, lng, a, b) for _, a, b in found]
    assert len(found) <= limit
    assert len({i for i, _, _ in found}) == len(found), "an id twice"
    assert all(d <= radius_km * (1 + BAND) for d in distances), "a result outside the radius"
    assert all(a <= b + 1e-6 for a, b in zip(distances, distances[1:], strict=False)), \
        "results not sorted by distance"
    for i, _, _ in found:
        assert i in reference, f"{i} is not a candidate (offline, or unknown)"
    # Nothing nearer was left out: every candidate inside the radius (clear of the band) and
    # nearer than the farthest answer — or any, when the page is not full — was returned.
    bound = distances[-1] if len(found) == limit else math.inf
    returned = {i for i, _, _ in found}
    missed = [(i, d) for i, (a, b) in reference.items()
              if (d := great_circle_km(lat, lng, a, b)) < min(bound, radius_km * (1 - BAND))
              and i not in returned]
    assert not missed, f"{len(missed)} nearer candidate(s) left out, e.g. {missed[:3]}"


@pytest.mark.parametrize(("lat", "lng", "radius_km"), QUERIES)
async def test_nearby_shops_are_the_nearest_within_the_radius(city: City, lat: float, lng: float,
                                                              radius_km: float) -> None:
    async with city.db.connect() as conn:
        rows = await store.nearby_shops(conn, lat, lng, radius_km)
    check_nearest([(str(r["id"]), r["latitude"], r["longitude"]) for r in rows], city.shops,
                  lat, lng, radius_km, NEARBY_LIMIT)


@pytest.mark.parametrize(("lat", "lng", "radius_km"), QUERIES)
async def test_nearby_runner_candidates_are_the_nearest_online_within_the_radius(
        city: City, lat: float, lng: float, radius_km: float) -> None:
    async with city.db.connect() as conn:
        rows = await store.nearby_runners(conn, lat, lng, radius_km)
    online = {uid: (a, b) for uid, (a, b, on) in city.runners.items() if on}
    check_nearest([(str(r["user_id"]), r["latitude"], r["longitude"]) for r in rows], online,
                  lat, lng, radius_km + SEARCH_MARGIN_KM, store.NEARBY_CANDIDATES)
    assert all(r["session_status"] == "active" for r in rows)


async def test_the_queries_reach_full_partial_and_empty_pages(city: City) -> None:
    """The cases above are not all alike: some fill the page, some find fewer, some none."""
    sizes = set()
    async with city.db.connect() as conn:
        for lat, lng, radius_km in QUERIES:
            sizes.add(len(await store.nearby_shops(conn, lat, lng, radius_km)))
    assert NEARBY_LIMIT in sizes and 0 in sizes and sizes - {0, NEARBY_LIMIT}, sizes


def _plan(url: str, stmt: Any) -> dict[str, Any]:
    sql, params = compile_statement(stmt)
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
        return cur.fetchone()[0][0]["Plan"]


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


@pytest.mark.parametrize("radius_km", [1.0, 10.0, 100.0])
def test_the_query_walks_the_index_nearest_first_whatever_the_radius(city_db: Platform, seeded,
                                                                      radius_km: float) -> None:
    """No scan of the whole table and no sort of everything inside the radius: the spatial
    index is read nearest first and stops after about one page of rows. (The query this
    replaced read every runner in a wide radius, and joined them in a nested loop over all
    runners: 13.8 s at this scale.)"""
    for stmt, index, limit, table_rows in (
            (store.nearby_runners_query(3.10, 101.68, radius_km), "ix_runner_locations_location",
             store.NEARBY_CANDIDATES, ONLINE + OFFLINE),
            (store.nearby_shops_query(3.10, 101.68, radius_km), "ix_pet_shops_location",
             NEARBY_LIMIT, SHOPS)):
        nodes = list(_nodes(_plan(city_db.database_url, stmt)))
        assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], nodes
        scans = [n for n in nodes if n.get("Index Name") == index]
        assert len(scans) == 1 and "Order By" in scans[0], scans  # KNN: `ORDER BY <->`
        # Offline runners are skipped on the way, so a few more rows than a page are read.
        assert scans[0]["Actual Rows"] <= limit * (ONLINE + OFFLINE) // ONLINE + 50, scans[0]
        assert scans[0]["Actual Rows"] < table_rows // 5
