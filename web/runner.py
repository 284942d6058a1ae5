"""HTTP views of the runner domain: runner profiles, presence, GPS, crates, nearby search, and
pet shops (reference §2.4).

Presence changes (`online`/`offline`) write the profile (and position) and enqueue their
`runner.*` event in one transaction (outbox). GPS fixes (`location`) are high-rate and are
produced straight to `runner.events`: the GPS agent is the single writer of positions (table +
PostGIS), so the view does not touch the database beyond checking the runner is online.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from typing import Annotated, Any, Literal

from aiohttp import web
from aiokafka.errors import KafkaError
from geoalchemy2.functions import ST_X, ST_Y
from geoalchemy2.types import Geometry
from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError
from sqlalchemy import select

from core.config import settings
from core.db import Connection, Row, db
from core.outbox import emit
from domain import offers as offer_rules
from domain import runner as rules
from kilat import runner_events
from models import events as ev
from models.runner import runner_locations
from stores import runner as store
from stores.identity import get_user
from tables.routing import routed_get
from tables.runners import position_of, runner_positions
from web.http import (
    ApiError,
    Body,
    already_exists,
    bad_request,
    created,
    forbidden,
    message,
    not_found,
    ok,
    parse_body,
    path_uuid,
    query_float,
    require_role,
    validation_error,
)

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
SOURCE = "service-runner"
PRODUCE_TIMEOUT_S = 10.0


# ------------------------------------------------------------------ request bodies

def _required(value: Any) -> Any:
    """Go's `binding:"required"`: an empty string or a zero number counts as missing."""
    if value == "" or (isinstance(value, int | float) and not isinstance(value, bool) and value == 0):
        raise PydanticCustomError("missing", "Field required")
    return value


def _coordinate(low: float, high: float, name: str):
    def check(value: float) -> float:
        if not low <= value <= high:
            raise ValueError(f"invalid {name}")
        return value
    return AfterValidator(check)


ReqStr = Annotated[str, AfterValidator(_required)]
Latitude = Annotated[float, Field(allow_inf_nan=False), _coordinate(-90.0, 90.0, "latitude")]
Longitude = Annotated[float, Field(allow_inf_nan=False), _coordinate(-180.0, 180.0, "longitude")]
# Free text, as in the original (which only intended car|van|motorcycle): apps name vehicles
# their own way and nothing matches on it. The usual names are in rules.VEHICLE_TYPES.
VehicleType = Annotated[ReqStr, Field(max_length=20)]
# Free text too: the original does not validate it, and runner apps name sizes their own way.
# The usual names (matching the crate requirement of bookings) are in rules.CRATE_SIZES.
CrateSize = Annotated[ReqStr, Field(max_length=20)]
ShopCategory = Literal["grooming", "vet", "boarding", "pet_store"]
Dimension = Annotated[float, Field(ge=0, lt=10000, allow_inf_nan=False)]

assert set(ShopCategory.__args__) == set(rules.SHOP_CATEGORIES)  # type: ignore[attr-defined]


class RegisterRunnerRequest(Body):
    # Optional, unlike the contract: the web runner dashboard never sends them; they default
    # from the user's account (see domain.runner.profile_defaults).
    full_name: str | None = Field(None, max_length=255)
    phone: str | None = Field(None, max_length=20)
    vehicle_type: VehicleType
    vehicle_plate: Annotated[ReqStr, Field(max_length=20)]
    vehicle_model: Annotated[ReqStr, Field(max_length=100)]
    # Optional too: the runner web app labels it so and leaves it out. Missing, null or 0 (Go's
    # zero value, "not given") is stored as NULL.
    vehicle_year: int | None = Field(None, ge=0, lt=10000)
    air_conditioned: bool = False


class UpdateRunnerRequest(Body):
    full_name: str | None = Field(None, max_length=255)
    phone: str | None = Field(None, max_length=20)
    vehicle_type: str | None = Field(None, max_length=20)
    vehicle_plate: str | None = Field(None, max_length=20)
    vehicle_model: str | None = Field(None, max_length=100)
    vehicle_year: int | None = Field(None, ge=0, lt=10000)
    air_conditioned: bool | None = None


class OnlineRequest(Body):
    latitude: Latitude
    longitude: Longitude


class LocationRequest(Body):
    latitude: Latitude
    longitude: Longitude
    speed_kmh: float = Field(0.0, allow_inf_nan=False)
    heading_degrees: float = Field(0.0, allow_inf_nan=False)


class CrateRequest(Body):
    size: CrateSize
    pet_types: list[str]
    max_weight_kg: Annotated[float, AfterValidator(_required), Field(gt=0, lt=10000, allow_inf_nan=False)]
    width_cm: Dimension = 0.0
    height_cm: Dimension = 0.0
    depth_cm: Dimension = 0.0
    ventilated: bool = False
    temperature_controlled: bool = False


class CreateShopRequest(Body):
    name: Annotated[ReqStr, Field(max_length=255)]
    address: ReqStr
    latitude: Latitude
    longitude: Longitude
    phone: str = Field("", max_length=20)
    email: str = Field("", max_length=255)
    category: ShopCategory
    services: list[str] = Field(default_factory=list)
    image_url: str = ""
    opening_hours: str = Field("", max_length=100)
    description: str = ""


class UpdateShopRequest(Body):
    """All optional; zero values ("", 0, missing list) leave a field unchanged."""

    name: str | None = Field(None, max_length=255)
    address: str | None = None
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    phone: str | None = Field(None, max_length=20)
    email: str | None = Field(None, max_length=255)
    category: Literal["", "grooming", "vet", "boarding", "pet_store"] | None = None
    services: list[str] | None = None
    image_url: str | None = None
    opening_hours: str | None = Field(None, max_length=100)
    description: str | None = None


# ------------------------------------------------------------------ DTOs

def crate_dto(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"], "size": row["size"], "pet_types": row["pet_types"] or [],
        "max_weight_kg": row["max_weight_kg"], "width_cm": row["width_cm"] or 0,
        "height_cm": row["height_cm"] or 0, "depth_cm": row["depth_cm"] or 0,
        "ventilated": row["ventilated"], "temperature_controlled": row["temperature_controlled"],
    }


def runner_dto(row: Row, crates: list[Row] | None = None) -> dict[str, Any]:
    """RunnerDTO: `crate_specs` only when the runner has crates, `distance_km` only from
    nearby search; no vehicle_year (as in the contract)."""
    dto: dict[str, Any] = {
        "id": row["id"], "user_id": row["user_id"], "full_name": row["full_name"],
        "phone": row["phone"], "vehicle_type": row["vehicle_type"],
        "vehicle_plate": row["vehicle_plate"], "vehicle_model": row["vehicle_model"],
        "air_conditioned": row["air_conditioned"], "session_status": row["session_status"],
        "rating": row["rating"], "total_trips": row["total_trips"],
    }
    if crates:
        dto["crate_specs"] = [crate_dto(c) for c in crates]
    if "distance_km" in row:
        dto["distance_km"] = row["distance_km"]
    dto["created_at"] = row["created_at"]
    return dto


# What anyone signed in may see of a runner (nearby search, a profile without a contact right):
# enough to choose one. The contract's keys that clients read stay; `full_name` carries the
# first name only, and phone and plate are left out (DESIGN 14).
PUBLIC_RUNNER_KEYS = ("id", "user_id", "full_name", "vehicle_type", "vehicle_model",
                      "air_conditioned", "session_status", "rating", "total_trips",
                      "distance_km", "created_at")


def public_runner_dto(row: Row) -> dict[str, Any]:
    dto = runner_dto(row)
    dto["full_name"] = rules.first_name(row["full_name"])
    return {k: dto[k] for k in PUBLIC_RUNNER_KEYS if k in dto}


def shop_dto(row: Row) -> dict[str, Any]:
    dto: dict[str, Any] = {"id": row["id"]}
    if row["owner_id"]:
        dto["owner_id"] = row["owner_id"]
    dto.update({
        "name": row["name"], "address": row["address"], "latitude": row["latitude"],
        "longitude": row["longitude"], "phone": row["phone"], "email": row["email"],
        "category": row["category"], "services": row["services"] or [], "rating": row["rating"],
    })
    if row["image_url"]:
        dto["image_url"] = row["image_url"]
    dto.update({"opening_hours": row["opening_hours"], "description": row["description"],
                "created_at": row["created_at"]})
    return dto


def _rule(exc: rules.RuleViolation) -> ApiError:
    return validation_error(str(exc))


def runner_not_found(user_id: str) -> ApiError:
    """The contract's 404 for `/runners/me*` without a profile (detail carries the user id)."""
    return not_found("runner", user_id)


async def _profile(conn: Connection, user_id: str, *, for_update: bool = False) -> Row:
    row = await store.get_runner(conn, user_id, for_update=for_update)
    if row is None:
        raise runner_not_found(user_id)
    return row


# ------------------------------------------------------------------ runner profile

@routes.post("/api/v1/runners")
async def register_runner(request: web.Request) -> web.Response:
    me = require_role(request, "runner")
    body = await parse_body(request, RegisterRunnerRequest)
    async with db.transaction() as conn:
        user = None if (body.full_name and body.phone) else await get_user(conn, me.user_id)
        full_name, phone = rules.profile_defaults(body.full_name, body.phone, user, me.email)
        row = await store.create_runner(conn, {
            "user_id": me.user_id, "full_name": full_name[:255], "phone": phone[:20],
            "vehicle_type": body.vehicle_type, "vehicle_plate": body.vehicle_plate,
            "vehicle_model": body.vehicle_model, "vehicle_year": body.vehicle_year or None,
            "air_conditioned": body.air_conditioned,
        })
        if row is None:
            raise already_exists("runner", "user_id", me.user_id)
    return created(runner_dto(row))


@routes.get("/api/v1/runners/me")
async def get_me(request: web.Request) -> web.Response:
    me = require_role(request, "runner")
    async with db.connect() as conn:
        row = await _profile(conn, me.user_id)
        crates = await store.crates_of(conn, [row["id"]])
    return ok(runner_dto(row, crates.get(row["id"])))


@routes.put("/api/v1/runners/me")
async def update_me(request: web.Request) -> web.Response:
    """Partial profile update (not in the original API; clients call it): absent, null or ""
    fields, and a zero vehicle_year, stay as they are."""
    me = require_role(request, "runner")
    body = await parse_body(request, UpdateRunnerRequest)
    changes = rules.changed_fields(body.model_dump())
    if changes.get("vehicle_year") == 0:
        del changes["vehicle_year"]
    async with db.transaction() as conn:
        row = await _profile(conn, me.user_id, for_update=True)
        if changes:
            row = await store.update_runner(conn, me.user_id, changes) or row
        crates = await store.crates_of(conn, [row["id"]])
    return ok(runner_dto(row, crates.get(row["id"])))


# ------------------------------------------------------------------ presence and GPS

@routes.post("/api/v1/runners/me/online")
async def go_online(request: web.Request) -> web.Response:
    me = require_role(request, "runner")
    body = await parse_body(request, OnlineRequest)
    async with db.transaction() as conn:
        profile = await _profile(conn, me.user_id, for_update=True)
        await store.set_session(conn, me.user_id, rules.SESSION_ACTIVE)
        await store.upsert_location(conn, me.user_id, body.latitude, body.longitude)
        # The crates ride along so job offers know what the runner can carry (streams/
        # job_offers.py) without a query per booking.
        await emit(conn, ev.RUNNER_EVENTS, me.user_id, SOURCE, "runner.online", {
            "runner_id": me.user_id, "latitude": body.latitude, "longitude": body.longitude,
            "crates": await _crate_summaries(conn, profile["id"])})
    return message("runner is now online")


@routes.post("/api/v1/runners/me/offline")
async def go_offline(request: web.Request) -> web.Response:
    me = require_role(request, "runner")
    async with db.transaction() as conn:
        await _profile(conn, me.user_id, for_update=True)
        await store.set_session(conn, me.user_id, rules.SESSION_INACTIVE)
        await emit(conn, ev.RUNNER_EVENTS, me.user_id, SOURCE, "runner.offline",
                   {"runner_id": me.user_id})
    return message("runner is now offline")


@routes.post("/api/v1/runners/me/location")
async def update_location(request: web.Request) -> web.Response:
    me = require_role(request, "runner")
    body = await parse_body(request, LocationRequest)
    fix = rules.Fix(body.latitude, body.longitude, body.speed_kmh, body.heading_degrees)
    try:
        fix = rules.check_fix(fix)
    except rules.RuleViolation as exc:
        raise bad_request(str(exc)) from None
    async with db.connect() as conn:
        status = await store.session_status(conn, me.user_id)
    if status is None:
        raise runner_not_found(me.user_id)
    try:
        rules.check_can_update_location(status)
    except rules.RuleViolation as exc:
        raise _rule(exc) from None
    # Produced directly (no outbox): a fix is a measurement, not a state change of ours, and
    # the GPS agent consuming runner.events is the one writer of positions. Waiting for the
    # broker's ack means "location updated" is only answered once the fix is durable.
    now = ev.now_rfc3339()
    event = ev.new_event(SOURCE, "runner.location_update", {
        "runner_id": me.user_id, "latitude": fix.latitude, "longitude": fix.longitude,
        "speed_kmh": fix.speed_kmh, "heading_degrees": fix.heading_degrees,
        "timestamp": now, "occurred_at": now,
    })
    try:
        sent = await runner_events.send(key=me.user_id.encode(), value=event.to_json())
        await asyncio.wait_for(asyncio.shield(sent), PRODUCE_TIMEOUT_S)
    except (TimeoutError, KafkaError) as exc:
        log.warning("location update not acknowledged by Kafka: %r", exc)
        raise ApiError(503, "service unavailable", "event broker unavailable",
                       headers={"Retry-After": "5"}) from None
    return message("location updated")


@routes.post("/api/v1/runners/me/crates")
async def add_crate(request: web.Request) -> web.Response:
    me = require_role(request, "runner")
    body = await parse_body(request, CrateRequest)
    async with db.transaction() as conn:
        profile = await _profile(conn, me.user_id)
        row = await store.add_crate(conn, profile["id"], body.model_dump())
        await emit(conn, ev.RUNNER_EVENTS, me.user_id, SOURCE, "runner.crates_updated", {
            "runner_id": me.user_id, "crates": await _crate_summaries(conn, profile["id"])})
    return created(crate_dto(row))


async def _crate_summaries(conn: Connection, profile_id: str) -> list[dict[str, Any]]:
    crates = await store.crates_of(conn, [profile_id])
    return [offer_rules.crate_summary(c) for c in crates.get(profile_id, [])]


# ------------------------------------------------------------------ nearby search

def _search_params(request: web.Request, default_radius: float) -> tuple[float, float, float]:
    lat = query_float(request, "latitude", required=True, low=-90, high=90)
    lng = query_float(request, "longitude", required=True, low=-180, high=180)
    radius = query_float(request, "radius_km", required=False, default=default_radius,
                         error="invalid radius")
    assert lat is not None and lng is not None and radius is not None
    if not rules.valid_radius(radius):
        raise bad_request("invalid radius")
    return lat, lng, radius


def _stand_in_key() -> bytes:
    """The secret that places nearby runners on their stand-in points: derived from the
    deployment's signing secret, so every worker agrees and no client can undo the offset."""
    return hmac.new(settings().jwt_secret.encode(), b"kilat nearby stand-in points",
                    hashlib.sha256).digest()


@routes.get("/api/v1/runners/nearby")
async def nearby_runners(request: web.Request) -> web.Response:
    """Online runners near a point, coarse on purpose (DESIGN 14).

    Distances to stand-in points in 0.1 km steps, first names, no phone, plate or
    coordinates (see domain.runner.stand_in_point)."""
    require_role(request)
    lat, lng, radius = _search_params(request, rules.DEFAULT_RUNNER_RADIUS_KM)
    async with db.connect() as conn:
        candidates = await store.nearby_runners(conn, lat, lng, radius)
    ranked = rules.rank_nearby(_stand_in_key(), lat, lng, radius, candidates)
    return ok([public_runner_dto(r) for r in ranked])


@routes.get("/api/v1/runners/{runner_id}")
async def get_runner(request: web.Request) -> web.Response:
    """A runner's card; phone and plate only with a contact right (DESIGN 14).

    By user id (what bookings carry) or profile id. The full RunnerDTO (phone, plate, full
    name) for admins, the runner, and the owner of a booking the runner accepted and has not
    finished; everyone else sees the nearby-search card."""
    me = require_role(request)
    runner_id = path_uuid(request, "runner_id", "invalid runner ID")
    async with db.connect() as conn:
        row = await store.find_runner(conn, runner_id)
        if row is None:
            raise not_found("runner", runner_id)
        runner_user = str(row["user_id"])
        contact = rules.may_see_contact(
            me.role, me.user_id, runner_user,
            me.role == "owner" and await store.has_contact_booking(conn, me.user_id, runner_user))
        if not contact:
            return ok(public_runner_dto(row))
        crates = await store.crates_of(conn, [row["id"]])
    return ok(runner_dto(row, crates.get(row["id"])))


# ------------------------------------------------------------------ pet shops

def _shop_id(request: web.Request) -> str:
    return path_uuid(request, "shop_id", "invalid pet shop ID")


@routes.get("/api/v1/petshops")
async def list_shops(request: web.Request) -> web.Response:
    require_role(request)
    category = request.query.get("category", "")  # a plain filter: an unknown one matches none
    async with db.connect() as conn:
        rows = await store.list_shops(conn, category or None)
    return ok([shop_dto(r) for r in rows])


@routes.get("/api/v1/petshops/nearby")
async def nearby_shops(request: web.Request) -> web.Response:
    require_role(request)
    lat, lng, radius = _search_params(request, rules.DEFAULT_SHOP_RADIUS_KM)
    async with db.connect() as conn:
        rows = await store.nearby_shops(conn, lat, lng, radius)
    return ok([shop_dto(r) for r in rows])


@routes.get("/api/v1/petshops/mine")
async def my_shops(request: web.Request) -> web.Response:
    me = require_role(request, "shop")
    async with db.connect() as conn:
        rows = await store.shops_of_owner(conn, me.user_id)
    return ok([shop_dto(r) for r in rows])


@routes.get("/api/v1/petshops/{shop_id}")
async def get_shop(request: web.Request) -> web.Response:
    require_role(request)
    shop_id = _shop_id(request)
    async with db.connect() as conn:
        row = await store.get_shop(conn, shop_id)
    if row is None:  # the original's sentinel error here, unlike PUT/DELETE's domain error
        raise ApiError(404, "not found")
    return ok(shop_dto(row))


@routes.post("/api/v1/petshops")
async def create_shop(request: web.Request) -> web.Response:
    me = require_role(request, "shop")
    body = await parse_body(request, CreateShopRequest)
    async with db.transaction() as conn:
        row = await store.create_shop(conn, me.user_id, body.model_dump())
    return created(shop_dto(row))


async def _owned_shop(conn: Connection, request: web.Request) -> Row:
    me = require_role(request, "shop", "admin")
    shop_id = _shop_id(request)
    row = await store.get_shop(conn, shop_id, for_update=True)
    if row is None:
        raise not_found("PetShop", shop_id)
    if not rules.can_manage_shop(row["owner_id"], me.user_id, me.role):
        raise forbidden("you do not own this pet shop")
    return row


@routes.put("/api/v1/petshops/{shop_id}")
async def update_shop(request: web.Request) -> web.Response:
    require_role(request, "shop", "admin")
    _shop_id(request)
    body = await parse_body(request, UpdateShopRequest)
    changes = rules.changed_fields(body.model_dump())
    if changes.get("latitude") == 0:  # a zero coordinate means "not given" on update
        del changes["latitude"]
    if changes.get("longitude") == 0:
        del changes["longitude"]
    async with db.transaction() as conn:
        row = await _owned_shop(conn, request)
        if "latitude" in changes or "longitude" in changes:
            changes.setdefault("latitude", row["latitude"])
            changes.setdefault("longitude", row["longitude"])
        if changes:
            row = await store.update_shop(conn, row["id"], changes) or row
    return ok(shop_dto(row))


@routes.delete("/api/v1/petshops/{shop_id}")
async def delete_shop(request: web.Request) -> web.Response:
    require_role(request, "shop", "admin")
    _shop_id(request)
    async with db.transaction() as conn:
        row = await _owned_shop(conn, request)
        await store.delete_shop(conn, row["id"])
    return message("pet shop deleted")


# ------------------------------------------------------------------ ops

@routes.get("/api/v1/admin/runners/{runner_id}/position")
async def admin_runner_position(request: web.Request) -> web.StreamResponse:
    """Ops view of a runner's live position: the table entry and the PostGIS row."""
    require_role(request, "admin")
    runner_id = path_uuid(request, "runner_id", "invalid runner ID")

    async def local() -> web.Response:
        live = position_of(runner_id)
        geom = runner_locations.c.location.cast(Geometry)
        row = await db.fetch_one(
            select(ST_Y(geom).label("latitude"), ST_X(geom).label("longitude"),
                   runner_locations.c.speed_kmh, runner_locations.c.recorded_at)
            .where(runner_locations.c.runner_id == runner_id))
        return ok({"runner_id": runner_id, "live": live.asdict() if live else None,
                   "stored": row})

    return await routed_get(request, runner_positions.name, runner_id, local)

