"""Queries of the public trip page (web/share_page.py): what a share link may show."""

from __future__ import annotations

from sqlalchemy import select

from core.db import Connection, Row
from models.booking import bookings
from models.tracking import shared_trips, trip_tracks

# What the page shows of a trip: never addresses, contacts or user ids (the link is public).
_STATE_COLUMNS = (
    shared_trips.c.share_token, shared_trips.c.booking_id, shared_trips.c.expires_at,
    bookings.c.status.label("booking_status"), bookings.c.pet_spec,
    trip_tracks.c.id.label("track_id"), trip_tracks.c.status.label("track_status"),
    trip_tracks.c.completed_at, trip_tracks.c.cancelled_at,
)
_JOINED = (shared_trips
           .join(bookings, bookings.c.id == shared_trips.c.booking_id)
           .outerjoin(trip_tracks, trip_tracks.c.booking_id == shared_trips.c.booking_id))


async def share_state(conn: Connection, token: str) -> Row | None:
    """The share link with its booking's status and pet, and its track (None when absent)."""
    return await conn.fetch_one(select(*_STATE_COLUMNS).select_from(_JOINED)
                                .where(shared_trips.c.share_token == token))


async def share_states(conn: Connection, tokens: list[str]) -> list[Row]:
    """`share_state` of many links in one query (the live page's status poll)."""
    if not tokens:
        return []
    return await conn.fetch_all(select(*_STATE_COLUMNS).select_from(_JOINED)
                                .where(shared_trips.c.share_token.in_(tokens)))
