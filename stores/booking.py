"""Booking queries shared by the booking views and agents and by other domains."""

from __future__ import annotations

from sqlalchemy import select

from core.db import Connection, Row
from models.booking import bookings


async def get_booking(conn: Connection, booking_id: str, *, for_update: bool = False) -> Row | None:
    """The booking row (without the PostGIS column), or None."""
    cols = [c for c in bookings.c if c.name != "pickup_location"]
    stmt = select(*cols).where(bookings.c.id == booking_id)
    if for_update:
        stmt = stmt.with_for_update()
    return await conn.fetch_one(stmt)


def is_participant(booking: Row, user_id: str, role: str) -> bool:
    """Owner, assigned runner, or admin (DESIGN item 6)."""
    return role == "admin" or user_id in (booking["owner_id"], booking.get("runner_id"))
