"""HTTP views of the booking domain: bookings and their lifecycle, proof photos, pets, admin.

Every view reads: parse → decide (domain/booking.py, pure) → persist + emit (stores/booking.py,
one transaction; events go through the outbox).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import pydantic
from aiohttp import web
from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from core.db import Connection, Row, db
from core.security import Principal
from domain import booking as rules
from services import booking as bookings
from services.booking import Actor
from stores import booking as store
from stores import runner as runner_store
from web import tracking as tracking_views
from web.http import (
    ApiError,
    Body,
    bad_request,
    conflict,
    created,
    invalid_transition,
    message,
    not_found,
    ok,
    page_params,
    paginated,
    parse_body,
    path_uuid,
    read_json,
    require_role,
    validation_error,
)

routes = web.RouteTableDef()

INVALID_ID = "invalid booking ID"


# ---------------------------------------------------------------- request bodies

def _required(value: Any) -> Any:
    """Go's `binding:"required"`: empty strings and zero numbers count as missing."""
    if value in ("", 0, None) or (isinstance(value, str) and not value.strip()):
        raise PydanticCustomError("missing", "Field required")
    return value


ReqStr = Annotated[str, AfterValidator(_required)]


class Strict(Body):
    model_config = pydantic.ConfigDict(extra="ignore", allow_inf_nan=False)


class VaccinationIn(Strict):
    vaccine_name: str = ""
    date_given: str | None = None
    expires_at: str | None = None
    vet_name: str = ""
    verified: bool = False


class PetSpecIn(Strict):
    pet_type: Annotated[str, Field(max_length=20), AfterValidator(_required)]
    breed: str = Field("", max_length=100)
    name: Annotated[str, Field(max_length=100), AfterValidator(_required)]
    weight_kg: Annotated[float, Field(le=1000), AfterValidator(_required)]
    age_months: int = Field(0, ge=0, le=1200)
    vaccinations: list[VaccinationIn] = Field(default_factory=list)
    special_needs: str = Field("", max_length=2000)
    photo_url: str = Field("", max_length=2000)


class AddressIn(Strict):
    line1: Annotated[str, Field(max_length=255), AfterValidator(_required)]
    line2: str = Field("", max_length=255)
    city: Annotated[str, Field(max_length=100), AfterValidator(_required)]
    state: Annotated[str, Field(max_length=100), AfterValidator(_required)]
    postal_code: str = Field("", max_length=20)
    country: Annotated[str, Field(max_length=100), AfterValidator(_required)]
    latitude: Annotated[float, Field(ge=-90, le=90), AfterValidator(_required)]
    longitude: Annotated[float, Field(ge=-180, le=180), AfterValidator(_required)]


class CreateBookingRequest(Strict):
    pet_spec: PetSpecIn
    pickup_address: AddressIn
    dropoff_address: AddressIn
    scheduled_at: str | None = None
    notes: str = Field("", max_length=1000)


class CancelBookingRequest(Strict):
    reason: str = Field("", max_length=500)


class DisputeRequest(Strict):
    reason: Annotated[str, Field(max_length=1000), AfterValidator(_required)]


class ResolveDisputeRequest(Strict):
    outcome: Annotated[str, AfterValidator(_required)]
    note: str = Field("", max_length=1000)


class PhotoRequest(Strict):
    photo_type: ReqStr
    photo_url: Annotated[str, Field(max_length=2000), AfterValidator(_required)]
    caption: str = Field("", max_length=2000)


class CreatePetRequest(Strict):
    name: Annotated[str, Field(max_length=100), AfterValidator(_required)]
    pet_type: Annotated[str, Field(max_length=20), AfterValidator(_required)]
    breed: str = Field("", max_length=100)
    weight_kg: float = Field(0, ge=0, le=999.99)
    age_months: int = Field(0, ge=0, le=1200)
    allergies: str = Field("", max_length=2000)
    special_needs: str = Field("", max_length=2000)
    notes: str = Field("", max_length=2000)
    photo_url: str = Field("", max_length=2000)
    vaccination_status: str = Field("", max_length=50)


class UpdatePetRequest(Strict):
    name: str = Field("", max_length=100)
    pet_type: str = Field("", max_length=20)
    breed: str = Field("", max_length=100)
    weight_kg: float = Field(0, le=999.99)
    age_months: int = Field(0, le=1200)
    allergies: str = Field("", max_length=2000)
    special_needs: str = Field("", max_length=2000)
    notes: str = Field("", max_length=2000)
    photo_url: str = Field("", max_length=2000)
    vaccination_status: str = Field("", max_length=50)


# ---------------------------------------------------------------- DTOs

PET_SPEC_KEYS = ("pet_type", "breed", "name", "weight_kg", "age_months", "vaccinations",
                 "special_needs", "photo_url")
ADDRESS_KEYS = ("line1", "line2", "city", "state", "postal_code", "country", "latitude",
                "longitude")
CRATE_KEYS = ("minimum_size", "needs_ventilation", "needs_temp_control",
              "minimum_weight_capacity")


def _pick(value: dict[str, Any] | None, keys: tuple[str, ...]) -> dict[str, Any]:
    value = value or {}
    return {k: value.get(k) for k in keys}


def booking_dto(b: Row) -> dict[str, Any]:
    """BookingDTO (reference §2.2): `omitempty` keys are left out when unset."""
    dto: dict[str, Any] = {"id": b["id"], "booking_number": b["booking_number"],
                           "owner_id": b["owner_id"]}
    if b.get("runner_id"):
        dto["runner_id"] = b["runner_id"]
    dto["status"] = b["status"]
    spec = _pick(b["pet_spec"], PET_SPEC_KEYS)
    spec["vaccinations"] = spec["vaccinations"] or []
    dto["pet_spec"] = spec
    dto["crate_requirement"] = _pick(b["crate_requirement"], CRATE_KEYS)
    dto["pickup_address"] = _pick(b["pickup_address"], ADDRESS_KEYS)
    dto["dropoff_address"] = _pick(b["dropoff_address"], ADDRESS_KEYS)
    if b.get("route_spec"):
        dto["route_spec"] = b["route_spec"]
    dto["estimated_price_cents"] = b["estimated_price_cents"]
    if b.get("final_price_cents") is not None:
        dto["final_price_cents"] = b["final_price_cents"]
    dto["currency"] = b["currency"]
    for key in ("scheduled_at", "picked_up_at", "delivered_at", "cancelled_at"):
        if b.get(key) is not None:
            dto[key] = b[key]
    for key in ("cancel_note", "notes"):
        if b.get(key):
            dto[key] = b[key]
    if b.get("disputed_at") is not None:
        dto["dispute"] = dispute_dto(b)
    dto.update(version=b["version"], created_at=b["created_at"], updated_at=b["updated_at"])
    return dto


def dispute_dto(b: Row) -> dict[str, Any]:
    """The owner's dispute of a delivery (not in the original contract; present only on a
    disputed booking, whose status stays `delivered` while the dispute is open)."""
    dto: dict[str, Any] = {"status": "resolved" if b.get("dispute_resolved_at") else "open",
                           "reason": b["dispute_reason"], "opened_at": b["disputed_at"]}
    if b.get("dispute_resolved_at") is not None:
        dto.update(outcome=b["dispute_outcome"], resolved_at=b["dispute_resolved_at"])
        if b.get("dispute_note"):
            dto["note"] = b["dispute_note"]
    return dto


def photo_dto(p: Row) -> dict[str, Any]:
    return {k: p[k] for k in ("id", "booking_id", "runner_id", "photo_type", "photo_url",
                              "caption", "taken_at", "created_at")}


def pet_dto(p: Row) -> dict[str, Any]:
    dto = {k: p[k] for k in ("id", "owner_id", "name", "pet_type", "breed", "weight_kg",
                             "age_months")}
    dto["weight_kg"] = float(p["weight_kg"])
    for key in ("allergies", "special_needs", "notes", "photo_url", "vaccination_status"):
        if p[key]:
            dto[key] = p[key]
    dto.update(status=p["status"], created_at=p["created_at"], updated_at=p["updated_at"])
    return dto


# ---------------------------------------------------------------- helpers

@contextmanager
def domain_errors() -> Iterator[None]:
    """Map the booking rules' exceptions onto the contract's errors."""
    try:
        yield
    except rules.InvalidTransition as exc:
        raise invalid_transition(exc.current, exc.target) from None
    except rules.NotAllowed as exc:
        raise ApiError(403, exc.message, exc.detail) from None
    except rules.DeclineConflict as exc:
        raise conflict(str(exc)) from None
    except store.BookingConflict:
        raise conflict("booking was modified by another transaction") from None
    except rules.BookingRuleError as exc:
        raise validation_error(str(exc)) from None
    except rules.Disputed:
        raise conflict_detail("booking is under dispute",
                              "the escrow is frozen until an admin resolves the dispute") from None
    except rules.DisputeRefused as exc:
        raise ApiError(422, str(exc), "") from None
    except rules.NotPaid as exc:
        raise ApiError(422, str(exc), exc.detail) from None


def conflict_detail(error: str, detail: str) -> ApiError:
    return ApiError(409, error, detail)


def _actor(principal: Principal) -> Actor:
    return Actor(principal.user_id, principal.role)


async def _move(request: web.Request, roles: tuple[str, ...],
                use_case: Callable[[Actor, str], Awaitable[Row]]) -> web.Response:
    """Authorise the role, parse the id, run the lifecycle use case, answer the booking."""
    principal = require_role(request, *roles)
    booking_id = path_uuid(request, "id", INVALID_ID)
    with domain_errors():
        row = await use_case(_actor(principal), booking_id)
    return ok(booking_dto(row))


# ---------------------------------------------------------------- bookings

@routes.post("/api/v1/bookings")
async def create_booking(request: web.Request) -> web.Response:
    principal = require_role(request, "owner")
    body = await parse_body(request, CreateBookingRequest)
    try:
        scheduled_at = rules.parse_scheduled_at(body.scheduled_at, datetime.now(UTC))
    except rules.BookingRuleError as exc:
        raise bad_request(str(exc)) from None
    with domain_errors():
        row = await bookings.book(principal.user_id, body.pet_spec.model_dump(),
                                  body.pickup_address.model_dump(),
                                  body.dropoff_address.model_dump(), notes=body.notes,
                                  scheduled_at=scheduled_at)
    return created(booking_dto(row))


@routes.get("/api/v1/bookings")
async def list_bookings(request: web.Request) -> web.Response:
    """Owner → own bookings; runner → assigned bookings, or with `?status=requested` the open
    jobs (nearest first when online); admin/shop → own (none). `status` filters every list."""
    principal = require_role(request)
    page, limit = page_params(request)
    try:
        statuses = rules.parse_status_filter(request.query.get("status"))
    except rules.BookingRuleError as exc:
        raise bad_request(str(exc)) from None
    async with db.connect() as conn:
        if principal.role == "runner" and statuses == (rules.REQUESTED,):
            near = await runner_store.runner_position(conn, principal.user_id, online_only=True)
            rows, total = await store.list_open_jobs(conn, near, page=page, limit=limit)
        elif principal.role == "runner":
            rows, total = await store.list_bookings(
                conn, runner_id=principal.user_id, statuses=statuses, page=page, limit=limit)
        else:
            rows, total = await store.list_bookings(
                conn, owner_id=principal.user_id, statuses=statuses, page=page, limit=limit)
    return paginated([booking_dto(r) for r in rows], total, page, limit)


@routes.get("/api/v1/bookings/{id}")
async def get_booking(request: web.Request) -> web.Response:
    principal = require_role(request)
    booking_id = path_uuid(request, "id", INVALID_ID)
    return ok(booking_dto(await bookings.view(_actor(principal), booking_id)))


@routes.post("/api/v1/bookings/{id}/accept")
async def accept_booking(request: web.Request) -> web.Response:
    return await _move(request, ("runner",), bookings.accept)


@routes.post("/api/v1/bookings/{id}/pickup")
async def pickup_booking(request: web.Request) -> web.Response:
    """accepted → in_progress; 422 `escrow not held` unless the owner's payment is held."""
    return await _move(request, ("runner",), bookings.pickup)


@routes.post("/api/v1/bookings/{id}/deliver")
async def deliver_booking(request: web.Request) -> web.Response:
    """in_progress → delivered; the escrow stays held until the owner confirms."""
    return await _move(request, ("runner",), bookings.deliver)


@routes.post("/api/v1/bookings/{id}/confirm")
async def confirm_booking(request: web.Request) -> web.Response:
    """delivered → completed by the booking's owner, which releases the escrow to the runner."""
    return await _move(request, ("owner",), bookings.confirm)


@routes.post("/api/v1/bookings/{id}/dispute")
async def dispute_booking(request: web.Request) -> web.Response:
    """The booking's owner disputes a delivery within the confirmation window.

    The escrow stays frozen (no auto-confirm, no release) until an admin resolves it."""
    require_role(request, "owner")
    path_uuid(request, "id", INVALID_ID)
    body = await parse_body(request, DisputeRequest)
    reason = body.reason.strip()
    return await _move(request, ("owner",),
                       lambda actor, booking_id: bookings.dispute(actor, booking_id, reason))


@routes.post("/api/v1/bookings/{id}/cancel")
async def cancel_booking(request: web.Request) -> web.Response:
    require_role(request)
    path_uuid(request, "id", INVALID_ID)
    body = await parse_body(request, CancelBookingRequest, required=False)
    return await _move(request, (),
                       lambda actor, booking_id: bookings.cancel(actor, booking_id, body.reason))


@routes.post("/api/v1/bookings/{id}/decline")
async def decline_booking(request: web.Request) -> web.Response:
    """accepted → requested by the assigned runner, with a reason (reference §2.2 Decline)."""
    principal = require_role(request, "runner")
    booking_id = path_uuid(request, "id", INVALID_ID)
    raw = await read_json(request)
    if not isinstance(raw, dict):
        raise bad_request("invalid request body")
    reason = raw.get("reason")
    if reason not in rules.DECLINE_REASONS:
        raise validation_error("reason must be one of: " + ", ".join(rules.DECLINE_REASONS))
    with domain_errors():
        row = await bookings.decline(_actor(principal), booking_id, reason)
    return ok(booking_dto(row))


@routes.post("/api/v1/bookings/{id}/rebook")
async def rebook(request: web.Request) -> web.Response:
    """A new requested booking with the same pet, addresses and notes (not the schedule)."""
    principal = require_role(request, "owner")
    booking_id = path_uuid(request, "id", INVALID_ID)
    with domain_errors():
        row = await bookings.rebook(_actor(principal), booking_id)
    return created(booking_dto(row))


@routes.post("/api/v1/bookings/{id}/photo")
async def add_photo(request: web.Request) -> web.Response:
    principal = require_role(request, "runner")
    booking_id = path_uuid(request, "id", INVALID_ID)
    body = await parse_body(request, PhotoRequest)
    if body.photo_type not in rules.PHOTO_TYPES:
        raise validation_error(f"invalid photo type: {body.photo_type}")
    with domain_errors():
        photo = await bookings.add_photo(_actor(principal), booking_id, body.photo_type,
                                         body.photo_url, body.caption)
    return created(photo_dto(photo))


@routes.get("/api/v1/bookings/{id}/photos")
async def list_photos(request: web.Request) -> web.Response:
    principal = require_role(request)
    booking_id = path_uuid(request, "id", INVALID_ID)
    with domain_errors():
        rows = await bookings.photos(_actor(principal), booking_id)
    return ok([photo_dto(p) for p in rows])


# ---------------------------------------------------------------- admin

@routes.get("/api/v1/bookings/{booking_id}/tracking")
async def booking_tracking(request: web.Request) -> web.Response:
    """The booking's trip track, as GET /api/v1/tracking/{bookingId} (the iOS runner app's path).
    """
    return await tracking_views.get_tracking(request)


@routes.get("/api/v1/admin/bookings")
async def admin_list(request: web.Request) -> web.Response:
    require_role(request, "admin")
    page, limit = page_params(request, over_max=20)
    try:
        statuses = rules.parse_status_filter(request.query.get("status"))
    except rules.BookingRuleError as exc:
        raise bad_request(str(exc)) from None
    async with db.connect() as conn:
        rows, total = await store.list_bookings(conn, statuses=statuses, page=page, limit=limit)
    return paginated([booking_dto(r) for r in rows], total, page, limit)


@routes.post("/api/v1/admin/bookings/{id}/resolve")
async def resolve_dispute(request: web.Request) -> web.Response:
    """An admin resolves an open dispute (outcome release or refund).

    `release` pays the runner (booking completed), `refund` gives the owner their money back
    (booking cancelled)."""
    require_role(request, "admin")
    path_uuid(request, "id", INVALID_ID)
    body = await parse_body(request, ResolveDisputeRequest)
    outcome = body.outcome.strip().lower()
    if outcome not in rules.DISPUTE_OUTCOMES:
        raise validation_error("outcome must be one of: " + ", ".join(rules.DISPUTE_OUTCOMES))
    note = body.note.strip()
    return await _move(request, ("admin",), lambda actor, booking_id: bookings.resolve(
        actor, booking_id, outcome, note))


@routes.get("/api/v1/admin/stats/bookings")
async def admin_stats(request: web.Request) -> web.Response:
    require_role(request, "admin")
    async with db.connect() as conn:
        counts = await store.count_by_status(conn)
    by_status = {s: counts.get(s, 0) for s in rules.STATUSES}
    return ok({"total_bookings": sum(counts.values()), "by_status": by_status})


# ---------------------------------------------------------------- pets

INVALID_PET_ID = "invalid pet ID"


async def _own_pet(conn: Connection, request: web.Request, owner_id: str) -> Row:
    pet_id = path_uuid(request, "id", INVALID_PET_ID)
    pet = await store.get_pet(conn, pet_id)
    if pet is None:
        raise not_found("Pet", pet_id)
    if pet["owner_id"] != owner_id:
        raise ApiError(403, "you do not own this pet profile", "")
    return pet


@routes.post("/api/v1/users/me/pets")  # the iOS client's path for the same thing
@routes.post("/api/v1/pets")
async def create_pet(request: web.Request) -> web.Response:
    principal = require_role(request, "owner")
    body = await parse_body(request, CreatePetRequest)
    async with db.transaction() as conn:
        pet = await store.insert_pet(conn, {**body.model_dump(), "owner_id": principal.user_id})
    return created(pet_dto(pet))


@routes.get("/api/v1/users/me/pets")  # the iOS client's path for the same thing
@routes.get("/api/v1/pets")
async def list_pets(request: web.Request) -> web.Response:
    principal = require_role(request, "owner")
    async with db.connect() as conn:
        rows = await store.list_active_pets(conn, principal.user_id)
    return ok([pet_dto(p) for p in rows])


@routes.get("/api/v1/pets/{id}")
async def get_pet(request: web.Request) -> web.Response:
    principal = require_role(request, "owner")
    async with db.connect() as conn:
        pet = await _own_pet(conn, request, principal.user_id)
    return ok(pet_dto(pet))


@routes.put("/api/v1/pets/{id}")
async def update_pet(request: web.Request) -> web.Response:
    """Partial update: only non-empty strings and positive numbers are applied."""
    principal = require_role(request, "owner")
    path_uuid(request, "id", INVALID_PET_ID)
    body = await parse_body(request, UpdatePetRequest)
    changes = {k: v for k, v in body.model_dump().items()
               if (isinstance(v, str) and v.strip()) or (not isinstance(v, str) and v > 0)}
    async with db.transaction() as conn:
        pet = await _own_pet(conn, request, principal.user_id)
        row = await store.update_pet(conn, pet, changes) if changes else pet
        if row is None:
            raise conflict("pet was modified by another transaction")
    return ok(pet_dto(row))


@routes.delete("/api/v1/pets/{id}")
async def archive_pet(request: web.Request) -> web.Response:
    principal = require_role(request, "owner")
    async with db.transaction() as conn:
        pet = await _own_pet(conn, request, principal.user_id)
        if pet["status"] != "archived":
            if await store.update_pet(conn, pet, {"status": "archived"}) is None:
                raise conflict("pet was modified by another transaction")
    return message("pet profile archived")
