"""Booking queries shared by the booking views and agents and by other domains.

`commit_transition` is the one way a booking changes status: optimistic update of the row,
a `booking_status_history` row and the transition's events in the outbox, all on the caller's
connection, i.e. inside the caller's single transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, func, insert, literal_column, select, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from core.db import Connection, Row
from core.outbox import emit
from domain.booking import SOURCE, InvalidTransition, Transition
from models.booking import (
    booking_decline_reasons,
    booking_photos,
    booking_status_history,
    bookings,
    pets,
)

BOOKING_COLUMNS = [c for c in bookings.c if c.name != "pickup_location"]


class BookingConflict(Exception):
    """Another transaction changed the booking (same status, newer version) → 409."""


async def get_booking(conn: Connection, booking_id: str, *, for_update: bool = False) -> Row | None:
    """The booking row (without the PostGIS column), or None."""
    stmt = select(*BOOKING_COLUMNS).where(bookings.c.id == booking_id)
    if for_update:
        stmt = stmt.with_for_update()
    return await conn.fetch_one(stmt)


def is_participant(booking: Row, user_id: str, role: str) -> bool:
    """Owner, assigned runner, or admin (DESIGN item 6)."""
    return role == "admin" or user_id in (booking["owner_id"], booking.get("runner_id"))


def _point(lat: float, lng: float) -> Any:
    return func.ST_SetSRID(func.ST_MakePoint(lng, lat), 4326).cast(
        bookings.c.pickup_location.type)


async def insert_booking(conn: Connection, values: dict[str, Any], pickup_lat: float,
                         pickup_lng: float) -> Row | None:
    """Insert a booking; None if its booking number is already taken (caller draws again)."""
    stmt = (pg_insert(bookings)
            .values(**values, pickup_location=_point(pickup_lat, pickup_lng))
            .on_conflict_do_nothing(index_elements=["booking_number"])
            .returning(*BOOKING_COLUMNS))
    return await conn.fetch_one(stmt)


async def add_history(conn: Connection, booking_id: str, from_status: str | None,
                      to_status: str, changed_by: str | None, reason: str | None) -> None:
    await conn.execute(insert(booking_status_history).values(
        booking_id=booking_id, from_status=from_status, to_status=to_status,
        changed_by=changed_by, reason=(reason or None) and reason[:500]))


async def emit_all(conn: Connection, events: list[tuple[str, str, str, dict[str, Any]]]) -> None:
    for topic, key, type_, data in events:
        await emit(conn, topic, key, SOURCE, type_, data)


async def commit_transition(conn: Connection, booking: Row, change: Transition,
                            changed_by: str | None) -> Row:
    """Apply a decided transition to `booking` (as read at `booking["version"]`).

    The row is updated only if nobody changed it since it was read (optimistic lock). If
    somebody did, the row is read again: a different status means this transition no longer
    applies (InvalidTransition → 422), the same status a lost race (BookingConflict → 409)."""
    stmt = (update(bookings)
            .where(and_(bookings.c.id == booking["id"],
                        bookings.c.version == booking["version"]))
            .values(**change.changes, status=change.target, version=bookings.c.version + 1,
                    updated_at=func.now())
            .returning(*BOOKING_COLUMNS))
    row = await conn.fetch_one(stmt)
    if row is None:
        current = await get_booking(conn, booking["id"])
        if current is not None and current["status"] != booking["status"]:
            raise InvalidTransition(current["status"], change.target)
        raise BookingConflict()
    await add_history(conn, row["id"], booking["status"], change.target, changed_by,
                      change.reason)
    await emit_all(conn, change.events)
    return row


async def add_decline_reason(conn: Connection, booking_id: str, runner_id: str,
                             reason: str) -> None:
    await conn.execute(insert(booking_decline_reasons).values(
        booking_id=booking_id, runner_id=runner_id, reason=reason))


# ---------------------------------------------------------------- lists and stats

def _offset(page: int, limit: int) -> int:
    """Rows to skip, kept within PostgreSQL's bigint (an absurd `?page=` is just past the end)."""
    return min((page - 1) * limit, 2**62)


async def list_bookings(conn: Connection, *, owner_id: str | None = None,
                        runner_id: str | None = None, statuses: tuple[str, ...] | None = None,
                        page: int, limit: int) -> tuple[list[Row], int]:
    """Bookings newest first, filtered by owner / runner / statuses (None = no filter)."""
    conds = []
    if owner_id is not None:
        conds.append(bookings.c.owner_id == owner_id)
    if runner_id is not None:
        conds.append(bookings.c.runner_id == runner_id)
    if statuses:
        conds.append(bookings.c.status.in_(statuses))
    where = and_(true(), *conds)
    total = await conn.scalar(select(func.count()).select_from(bookings).where(where))
    rows = await conn.fetch_all(
        select(*BOOKING_COLUMNS).where(where)
        .order_by(bookings.c.created_at.desc(), bookings.c.id)
        .limit(limit).offset(_offset(page, limit)))
    return rows, int(total or 0)


async def list_open_jobs(conn: Connection, near: tuple[float, float] | None, *, page: int,
                         limit: int) -> tuple[list[Row], int]:
    """Requested, unassigned bookings: nearest pickup to `near` (lat, lng) first, else newest
    first. Distances are PostGIS geography distances (metres)."""
    where = and_(bookings.c.status == "requested", bookings.c.runner_id.is_(None))
    order: list[Any] = [bookings.c.created_at.desc(), bookings.c.id]
    if near is not None:
        order.insert(0, func.ST_Distance(bookings.c.pickup_location, _point(*near)).asc())
    total = await conn.scalar(select(func.count()).select_from(bookings).where(where))
    rows = await conn.fetch_all(
        select(*BOOKING_COLUMNS).where(where).order_by(*order)
        .limit(limit).offset(_offset(page, limit)))
    return rows, int(total or 0)


async def count_by_status(conn: Connection) -> dict[str, int]:
    rows = await conn.fetch_all(
        select(bookings.c.status, func.count().label("n")).group_by(bookings.c.status))
    return {r["status"]: int(r["n"]) for r in rows}


# ---------------------------------------------------------------- photos

async def add_photo(conn: Connection, booking_id: str, runner_id: str, photo_type: str,
                    photo_url: str, caption: str) -> Row:
    row = await conn.fetch_one(insert(booking_photos).values(
        booking_id=booking_id, runner_id=runner_id, photo_type=photo_type,
        photo_url=photo_url, caption=caption).returning(*booking_photos.c))
    assert row is not None
    return row


async def list_photos(conn: Connection, booking_id: str) -> list[Row]:
    return await conn.fetch_all(
        select(booking_photos).where(booking_photos.c.booking_id == booking_id)
        .order_by(booking_photos.c.taken_at.asc(), booking_photos.c.created_at.asc()))


# ---------------------------------------------------------------- pets

async def insert_pet(conn: Connection, values: dict[str, Any]) -> Row:
    row = await conn.fetch_one(insert(pets).values(**values).returning(*pets.c))
    assert row is not None
    return row


async def get_pet(conn: Connection, pet_id: str) -> Row | None:
    return await conn.fetch_one(select(pets).where(pets.c.id == pet_id))


async def list_active_pets(conn: Connection, owner_id: str) -> list[Row]:
    return await conn.fetch_all(
        select(pets).where(and_(pets.c.owner_id == owner_id, pets.c.status == "active"))
        .order_by(pets.c.created_at.desc(), pets.c.id))


async def update_pet(conn: Connection, pet: Row, changes: dict[str, Any]) -> Row | None:
    """Optimistic update (None if the pet changed since it was read)."""
    return await conn.fetch_one(
        update(pets)
        .where(and_(pets.c.id == pet["id"], pets.c.version == pet["version"]))
        .values(**changes, version=pets.c.version + 1, updated_at=literal_column("now()"))
        .returning(*pets.c))
