"""A city's worth of runners and pet shops, written straight into a deployment's database: for
the nearby-search scale test and bench/nearby_bench.py."""

from __future__ import annotations

import random
import uuid

import psycopg2
import psycopg2.extras

# The city: about 28 km x 33 km around Kuala Lumpur.
LAT0, LAT1, LNG0, LNG1 = 2.95, 3.25, 101.55, 101.80

Runners = dict[str, tuple[float, float, bool]]  # user id -> (latitude, longitude, online)
Shops = dict[str, tuple[float, float]]  # shop id -> (latitude, longitude)


def random_point(rnd: random.Random) -> tuple[float, float]:
    """A uniformly random (latitude, longitude) in the city."""
    return rnd.uniform(LAT0, LAT1), rnd.uniform(LNG0, LNG1)


def seed_city(url: str, online: int, offline: int, shops: int, seed: int = 17
              ) -> tuple[Runners, Shops]:
    """`online` + `offline` runners with a last known position and `shops` pet shops spread
    uniformly over the city, plus one online runner with no known position; then ANALYZE.
    Returns what was written."""
    rnd = random.Random(seed)
    runners: Runners = {str(uuid.uuid4()): (*random_point(rnd), i < online)
                        for i in range(online + offline)}
    shop_points: Shops = {str(uuid.uuid4()): random_point(rnd) for _ in range(shops)}
    profile = ("INSERT INTO runners (user_id, full_name, phone, vehicle_type, vehicle_plate, "
               "vehicle_model, session_status) VALUES %s")
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        psycopg2.extras.execute_values(
            cur, profile, [(uid, f"Runner {n}", "+60123456789", "car", f"W{n}", "Myvi",
                            "active" if on else "inactive")
                           for n, (uid, (_, _, on)) in enumerate(runners.items())],
            page_size=2000)
        psycopg2.extras.execute_values(
            cur, "INSERT INTO runner_locations (runner_id, location, recorded_at) VALUES %s",
            [(uid, lng, lat) for uid, (lat, lng, _) in runners.items()],
            template="(%s, ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, now())",
            page_size=2000)
        psycopg2.extras.execute_values(
            cur, profile, [(str(uuid.uuid4()), "No Fix", "+60123456789", "car", "W0", "Myvi",
                            "active")])
        psycopg2.extras.execute_values(
            cur, "INSERT INTO pet_shops (id, name, address, location, category) VALUES %s",
            [(sid, f"Shop {n}", "Kuala Lumpur", lng, lat)
             for n, (sid, (lat, lng)) in enumerate(shop_points.items())],
            template="(%s, %s, %s, ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, 'vet')",
            page_size=2000)
    with psycopg2.connect(url) as conn:
        conn.autocommit = True
        conn.cursor().execute("ANALYZE")
    return runners, shop_points
