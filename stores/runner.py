"""Runner-domain queries shared by its views and by other domains: runner profiles, crates,
last known positions (PostGIS), nearby search, pet shops.

Runners are looked up by their USER id (what every event and booking carries); the profile
row's own id is only shown as RunnerDTO.id.
"""

from __future__ import annotations

from typing import Any

from geoalchemy2 import Geography, Geometry
from sqlalchemy import ColumnElement, Select, delete, func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from core.db import Connection, Row
from domain.runner import (
    CONTACT_STATUSES,
    NEARBY_LIMIT,
    SEARCH_MARGIN_KM,
    SESSION_ACTIVE,
    SHOP_LIST_LIMIT,
)
from models.booking import bookings
from models.runner import crate_specs, pet_shops, runner_locations, runners

RUNNER_COLUMNS = [c for c in runners.c]
CRATE_COLUMNS = [c for c in crate_specs.c]


def point(latitude: float, longitude: float):
    """A `geography(Point,4326)` value (PostGIS takes longitude first)."""
    return func.ST_SetSRID(func.ST_MakePoint(longitude, latitude), 4326).cast(Geography)


# ------------------------------------------------------------------ runners

async def get_runner(conn: Connection, user_id: str, *, for_update: bool = False) -> Row | None:
    """The runner profile of a user, or None."""
    stmt = select(*RUNNER_COLUMNS).where(runners.c.user_id == user_id)
    if for_update:
        stmt = stmt.with_for_update()
    return await conn.fetch_one(stmt)


async def create_runner(conn: Connection, values: dict[str, Any]) -> Row | None:
    """Insert a profile; None when the user already has one (race-safe on the unique key)."""
    stmt = (pg_insert(runners).values(**values)
            .on_conflict_do_nothing(index_elements=["user_id"])
            .returning(*RUNNER_COLUMNS))
    return await conn.fetch_one(stmt)


async def update_runner(conn: Connection, user_id: str, changes: dict[str, Any]) -> Row | None:
    """Apply profile changes (bumping version and updated_at); None if there is no profile."""
    stmt = (update(runners).where(runners.c.user_id == user_id)
            .values(**changes, version=runners.c.version + 1, updated_at=func.now())
            .returning(*RUNNER_COLUMNS))
    return await conn.fetch_one(stmt)


async def set_session(conn: Connection, user_id: str, status: str) -> Row | None:
    return await update_runner(conn, user_id, {"session_status": status})


async def session_status(conn: Connection, user_id: str) -> str | None:
    """`active`/`inactive`, or None when the user has no runner profile."""
    return await conn.scalar(select(runners.c.session_status).where(runners.c.user_id == user_id))


async def upsert_location(conn: Connection, user_id: str, latitude: float, longitude: float) -> None:
    """The runner's position as of now (going online). GPS fixes are written by the GPS agent's
    sink, which only moves a position forward in time; this write stamps `now()` so later fixes
    still apply."""
    stmt = pg_insert(runner_locations).values(
        runner_id=user_id, location=point(latitude, longitude), speed_kmh=0.0,
        heading_degrees=0.0, recorded_at=func.now())
    stmt = stmt.on_conflict_do_update(
        index_elements=["runner_id"],
        set_={"location": stmt.excluded.location, "speed_kmh": 0.0, "heading_degrees": 0.0,
              "recorded_at": func.now(), "updated_at": func.now()})
    await conn.execute(stmt)


async def runner_position(conn: Connection, user_id: str, *, online_only: bool = True
                          ) -> tuple[float, float] | None:
    """(latitude, longitude) of a runner's last known position; None when unknown (or, with
    `online_only`, when the runner is offline). For e.g. nearest-first job lists."""
    geom = runner_locations.c.location.cast(Geometry)
    stmt = (select(func.ST_Y(geom).label("lat"), func.ST_X(geom).label("lng"))
            .select_from(runner_locations.join(runners, runners.c.user_id == runner_locations.c.runner_id))
            .where(runner_locations.c.runner_id == user_id))
    if online_only:
        stmt = stmt.where(runners.c.session_status == SESSION_ACTIVE)
    row = await conn.fetch_one(stmt)
    return (row["lat"], row["lng"]) if row else None


async def crates_of(conn: Connection, profile_ids: list[str]) -> dict[str, list[Row]]:
    """Crate specs per runner profile id (oldest first)."""
    if not profile_ids:
        return {}
    rows = await conn.fetch_all(
        select(*CRATE_COLUMNS).where(crate_specs.c.runner_id.in_(profile_ids))
        .order_by(crate_specs.c.created_at, crate_specs.c.id))
    out: dict[str, list[Row]] = {}
    for row in rows:
        out.setdefault(row["runner_id"], []).append(row)
    return out


async def add_crate(conn: Connection, profile_id: str, values: dict[str, Any]) -> Row:
    stmt = insert(crate_specs).values(runner_id=profile_id, **values).returning(*CRATE_COLUMNS)
    row = await conn.fetch_one(stmt)
    assert row is not None
    return row


# Nearby search re-ranks on stand-in points (domain.runner.rank_nearby), which can move a
# runner by up to a few hundred metres: fetch more than the page it shows.
NEARBY_CANDIDATES = 200


def _nearest_within(nearest: Select, location: ColumnElement, here: ColumnElement,
                    radius_m: float, limit: int, *tie_break: ColumnElement) -> Select:
    """The `limit` rows of `nearest` closest to `here`, then only those within `radius_m`,
    nearest first (ties broken by `tie_break`).

    Why this shape (docs/performance.md): the inner query is a plain KNN walk of the GiST
    index (`ORDER BY location <-> here LIMIT n`), which reads about `limit` index entries
    whatever the radius and the density. The radius is applied afterwards with ST_DWithin on
    geography, on those few rows only. Putting ST_DWithin inside instead lets the planner
    estimate one matching row (PostGIS's estimate for geography), so a wide radius over a
    dense city got a sort of every row in it, or a nested loop over the whole join (13.8 s
    with 10,000 runners). Filtering after the limit loses nothing: the rows inside the radius
    are the nearest ones. `<->` on geography is the sphere distance and ST_DWithin the
    spheroid one (at most 0.5 % apart), so only a row within that margin of the radius
    could be judged differently by the two."""
    metres = location.op("<->")(here)
    near = nearest.add_columns(metres.label("metres")).order_by(metres).limit(limit).subquery()
    return (select(*[c for c in near.c if c.name not in ("location", "metres")])
            .where(func.ST_DWithin(near.c.location, here, radius_m))
            .order_by(near.c.metres, *[near.c[c.name] for c in tie_break]))


def nearby_runners_query(latitude: float, longitude: float, radius_km: float,
                         limit: int = NEARBY_CANDIDATES) -> Select:
    """Candidates for nearby search: the `limit` online runners with a known position nearest
    to the point, within `radius_km` plus the stand-in margin, nearest first, with their TRUE
    `latitude`/`longitude` (for domain.runner.rank_nearby only; never shown)."""
    here = point(latitude, longitude)
    geom = runner_locations.c.location.cast(Geometry)
    nearest = (select(*RUNNER_COLUMNS, runner_locations.c.location,
                      func.ST_Y(geom).label("latitude"), func.ST_X(geom).label("longitude"))
               .select_from(runner_locations.join(
                   runners, runners.c.user_id == runner_locations.c.runner_id))
               .where(runners.c.session_status == SESSION_ACTIVE))
    return _nearest_within(nearest, runner_locations.c.location, here,
                           (radius_km + SEARCH_MARGIN_KM) * 1000.0, limit, runners.c.id)


async def nearby_runners(conn: Connection, latitude: float, longitude: float, radius_km: float,
                         limit: int = NEARBY_CANDIDATES) -> list[Row]:
    """See nearby_runners_query."""
    return await conn.fetch_all(nearby_runners_query(latitude, longitude, radius_km, limit))


async def find_runner(conn: Connection, runner_id: str) -> Row | None:
    """A runner profile by the runner's user id or by the profile's own id."""
    return await conn.fetch_one(select(*RUNNER_COLUMNS).where(
        (runners.c.user_id == runner_id) | (runners.c.id == runner_id)))


async def has_contact_booking(conn: Connection, owner_id: str, runner_user_id: str) -> bool:
    """Whether `owner_id` owns a booking that this runner accepted and has not finished
    (domain.runner.CONTACT_STATUSES): the one case where an owner sees the runner's contact."""
    stmt = (select(literal(1)).select_from(bookings)
            .where(bookings.c.owner_id == owner_id, bookings.c.runner_id == runner_user_id,
                   bookings.c.status.in_(CONTACT_STATUSES))
            .limit(1))
    return bool(await conn.scalar(stmt))


async def set_runner_rating(conn: Connection, user_id: str, rating: float,
                            total_trips: int | None = None) -> None:
    """For the review/booking domains: a runner's aggregate rating (and trip count)."""
    values: dict[str, Any] = {"rating": round(rating, 2), "updated_at": func.now()}
    if total_trips is not None:
        values["total_trips"] = total_trips
    await conn.execute(update(runners).where(runners.c.user_id == user_id).values(**values))


async def increment_total_trips(conn: Connection, user_id: str) -> None:
    """For the booking/review domains: one more completed trip for a runner (by user id)."""
    await conn.execute(update(runners).where(runners.c.user_id == user_id)
                       .values(total_trips=runners.c.total_trips + 1, updated_at=func.now()))


# ------------------------------------------------------------------ pet shops

_shop_geom = pet_shops.c.location.cast(Geometry)
SHOP_COLUMNS = [c for c in pet_shops.c if c.name != "location"] + [
    func.ST_Y(_shop_geom).label("latitude"), func.ST_X(_shop_geom).label("longitude")]


async def list_shops(conn: Connection, category: str | None = None,
                     limit: int = SHOP_LIST_LIMIT) -> list[Row]:
    stmt = select(*SHOP_COLUMNS).order_by(pet_shops.c.rating.desc(), pet_shops.c.name.asc(),
                                          pet_shops.c.id).limit(limit)
    if category:
        stmt = stmt.where(pet_shops.c.category == category)
    return await conn.fetch_all(stmt)


def nearby_shops_query(latitude: float, longitude: float, radius_km: float,
                       limit: int = NEARBY_LIMIT) -> Select:
    """The `limit` shops nearest to the point within `radius_km`, nearest first."""
    nearest = select(*SHOP_COLUMNS, pet_shops.c.location)
    return _nearest_within(nearest, pet_shops.c.location, point(latitude, longitude),
                           radius_km * 1000.0, limit, pet_shops.c.id)


async def nearby_shops(conn: Connection, latitude: float, longitude: float, radius_km: float,
                       limit: int = NEARBY_LIMIT) -> list[Row]:
    """See nearby_shops_query."""
    return await conn.fetch_all(nearby_shops_query(latitude, longitude, radius_km, limit))


async def shops_of_owner(conn: Connection, owner_id: str) -> list[Row]:
    stmt = (select(*SHOP_COLUMNS).where(pet_shops.c.owner_id == owner_id)
            .order_by(pet_shops.c.created_at.desc(), pet_shops.c.id))
    return await conn.fetch_all(stmt)


async def get_shop(conn: Connection, shop_id: str, *, for_update: bool = False) -> Row | None:
    stmt = select(*SHOP_COLUMNS).where(pet_shops.c.id == shop_id)
    if for_update:
        stmt = stmt.with_for_update(of=pet_shops)
    return await conn.fetch_one(stmt)


def _shop_values(values: dict[str, Any]) -> dict[str, Any]:
    """Column values from DTO-style fields (latitude/longitude become the geography point)."""
    out = {k: v for k, v in values.items() if k not in ("latitude", "longitude")}
    if "latitude" in values and "longitude" in values:
        out["location"] = point(values["latitude"], values["longitude"])
    return out


async def create_shop(conn: Connection, owner_id: str | None, values: dict[str, Any]) -> Row:
    row = await conn.fetch_one(
        insert(pet_shops).values(owner_id=owner_id, **_shop_values(values))
        .returning(*SHOP_COLUMNS))
    assert row is not None
    return row


async def update_shop(conn: Connection, shop_id: str, values: dict[str, Any]) -> Row | None:
    """Set the given fields; give latitude and longitude together to move the shop."""
    row = await conn.fetch_one(
        update(pet_shops).where(pet_shops.c.id == shop_id)
        .values(**_shop_values(values), updated_at=func.now())
        .returning(*SHOP_COLUMNS))
    return row


async def delete_shop(conn: Connection, shop_id: str) -> bool:
    return await conn.execute(delete(pet_shops).where(pet_shops.c.id == shop_id)) > 0


async def set_shop_rating(conn: Connection, shop_id: str, rating: float) -> None:
    """For the review domain: a shop's aggregate rating."""
    await conn.execute(update(pet_shops).where(pet_shops.c.id == shop_id)
                       .values(rating=round(rating, 2), updated_at=func.now()))


DEMO_SHOPS: tuple[dict[str, Any], ...] = (
    {"name": "Paws & Claws Grooming", "category": "grooming", "latitude": 3.1466,
     "longitude": 101.7108, "rating": 4.5, "address": "Lot 12, Jalan Bukit Bintang, 55100 Kuala Lumpur",
     "phone": "+60321410001", "services": ["bath", "haircut", "nail_trim"],
     "opening_hours": "10:00-20:00", "description": "Full-service dog and cat grooming."},
    {"name": "Meow Manor Cat Hotel", "category": "boarding", "latitude": 3.1579,
     "longitude": 101.7123, "rating": 4.8, "address": "23 Jalan Ampang, 50450 Kuala Lumpur",
     "phone": "+60321410002", "services": ["cat_boarding", "daycare"],
     "opening_hours": "08:00-22:00", "description": "Boutique boarding for cats only."},
    {"name": "Bangsar Animal Clinic", "category": "vet", "latitude": 3.1307,
     "longitude": 101.6711, "rating": 4.7, "address": "5 Jalan Telawi 3, Bangsar Baru, 59100 Kuala Lumpur",
     "phone": "+60322830003", "services": ["consultation", "vaccination", "surgery"],
     "opening_hours": "09:00-21:00", "description": "Small-animal veterinary clinic."},
    {"name": "Petworld Mid Valley", "category": "pet_store", "latitude": 3.1182,
     "longitude": 101.6773, "rating": 4.2,
     "address": "Mid Valley Megamall, Lingkaran Syed Putra, 59200 Kuala Lumpur",
     "phone": "+60322840004", "services": ["food", "accessories", "aquarium"],
     "opening_hours": "10:00-22:00", "description": "Pet food, toys and accessories."},
    {"name": "PJ Pet Spa", "category": "grooming", "latitude": 3.1073,
     "longitude": 101.6067, "rating": 4.3, "address": "18 Jalan SS2/24, 47300 Petaling Jaya",
     "phone": "+60378760005", "services": ["bath", "de-shedding", "spa"],
     "opening_hours": "10:00-19:00", "description": "Relaxing spa treatments for dogs."},
    {"name": "Damansara Vet Centre", "category": "vet", "latitude": 3.1349,
     "longitude": 101.6297, "rating": 4.6, "address": "2 Jalan SS21/37, Damansara Utama, 47400 Petaling Jaya",
     "phone": "+60377290006", "services": ["consultation", "dental", "x-ray"],
     "opening_hours": "09:00-20:00", "description": "Vet centre with in-house imaging."},
    {"name": "Happy Tails Boarding", "category": "boarding", "latitude": 3.0738,
     "longitude": 101.6068, "rating": 4.4, "address": "9 Jalan SS15/4, 47500 Subang Jaya",
     "phone": "+60356310007", "services": ["dog_boarding", "daycare", "walking"],
     "opening_hours": "07:00-21:00", "description": "Dog boarding with daily walks."},
)


async def seed_demo_shops(conn: Connection) -> int:
    """Insert the seven Klang Valley demo shops (no owner) when `pet_shops` is empty.

    Returns how many were inserted (0 if the table already had shops), so running a seed
    command twice is harmless."""
    if await conn.scalar(select(literal(1)).select_from(pet_shops).limit(1)):
        return 0
    for shop in DEMO_SHOPS:
        await create_shop(conn, None, shop)
    return len(DEMO_SHOPS)
