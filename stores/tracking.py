"""Tracking queries shared by the tracking views and agents: tracks, waypoints, route, chat,
shared trips."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from core.db import Connection, Row
from domain.tracking import ACTIVE, path_length_km, round_km
from models.tracking import chat_messages, shared_trips, trip_tracks, waypoints

EMPTY_ROUTE: dict[str, Any] = {"type": "LineString", "coordinates": []}


def _point(lat: float, lng: float):
    return func.ST_SetSRID(func.ST_MakePoint(lng, lat), 4326).cast(waypoints.c.location.type)


# ---------------------------------------------------------------- tracks

async def get_track(conn: Connection, booking_id: str, *, for_update: bool = False) -> Row | None:
    stmt = select(trip_tracks).where(trip_tracks.c.booking_id == booking_id)
    if for_update:
        stmt = stmt.with_for_update()
    return await conn.fetch_one(stmt)


async def start_track(conn: Connection, *, booking_id: str, runner_id: str, owner_id: str | None,
                      started_at: datetime) -> tuple[Row, bool]:
    """Create the booking's track (idempotent by booking id); returns (track, created).

    A booking accepted again after a decline keeps its track; the new runner takes it over."""
    stmt = (pg_insert(trip_tracks)
            .values(booking_id=booking_id, runner_id=runner_id, owner_id=owner_id,
                    status=ACTIVE, started_at=started_at)
            .on_conflict_do_nothing(index_elements=["booking_id"])
            .returning(*trip_tracks.c))
    row = await conn.fetch_one(stmt)
    if row is not None:
        return row, True
    row = await get_track(conn, booking_id, for_update=True)
    assert row is not None
    if row["status"] == ACTIVE and row["runner_id"] != runner_id:
        row = await conn.fetch_one(
            update(trip_tracks).where(trip_tracks.c.id == row["id"])
            .values(runner_id=runner_id, version=trip_tracks.c.version + 1,
                    updated_at=func.now())
            .returning(*trip_tracks.c))
    return row, False


async def track_distance_km(conn: Connection, track_id: str) -> float:
    """Haversine length of the stored waypoints in recorded order, 3 decimals."""
    rows = await conn.fetch_all(
        select(waypoints.c.latitude, waypoints.c.longitude)
        .where(waypoints.c.trip_track_id == track_id).order_by(waypoints.c.recorded_at))
    return round_km(path_length_km((r["latitude"], r["longitude"]) for r in rows))


async def finish_track(conn: Connection, booking_id: str, status: str,
                       at: datetime) -> tuple[Row | None, bool]:
    """Complete or cancel the active track; returns (track, changed). Completion stores the
    total distance over the stored waypoints."""
    row = await get_track(conn, booking_id, for_update=True)
    if row is None or row["status"] != ACTIVE:
        return row, False
    values: dict[str, Any] = {"status": status, "version": trip_tracks.c.version + 1,
                              "updated_at": func.now()}
    if status == "completed":
        values["completed_at"] = at
        values["total_distance_km"] = await track_distance_km(conn, row["id"])
    else:
        values["cancelled_at"] = at
    row = await conn.fetch_one(update(trip_tracks).where(trip_tracks.c.id == row["id"])
                               .values(**values).returning(*trip_tracks.c))
    return row, True


# ---------------------------------------------------------------- waypoints

def waypoint_row(track_id: str, lat: float, lng: float, speed_kmh: float, heading: float,
                 recorded_at: datetime) -> dict[str, Any]:
    return {"trip_track_id": track_id, "latitude": lat, "longitude": lng,
            "speed_kmh": speed_kmh, "heading_degrees": heading, "recorded_at": recorded_at}


async def write_waypoints(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert a batch of waypoints; a point already stored (redelivery) is skipped."""
    if not rows:
        return
    values = [{**r, "location": _point(r["latitude"], r["longitude"])} for r in rows]
    await conn.execute(pg_insert(waypoints).values(values).on_conflict_do_nothing(
        index_elements=["trip_track_id", "recorded_at"]))


async def list_waypoints(conn: Connection, track_id: str) -> list[Row]:
    return await conn.fetch_all(
        select(waypoints.c.id, waypoints.c.latitude, waypoints.c.longitude,
               waypoints.c.speed_kmh, waypoints.c.heading_degrees, waypoints.c.recorded_at)
        .where(waypoints.c.trip_track_id == track_id).order_by(waypoints.c.recorded_at))


async def route_geojson(conn: Connection, track_id: str) -> dict[str, Any]:
    """The route as a GeoJSON LineString built by PostGIS, points in recorded order."""
    text = await conn.scalar(
        "SELECT ST_AsGeoJSON(ST_MakeLine(location::geometry ORDER BY recorded_at)) "
        "FROM waypoints WHERE trip_track_id = %(id)s", {"id": track_id})
    if not text:
        return dict(EMPTY_ROUTE)
    return json.loads(text)


# ---------------------------------------------------------------- chat

async def add_chat_message(conn: Connection, *, booking_id: str, sender_id: str,
                           sender_role: str, message_type: str, content: str) -> Row:
    return await conn.fetch_one(
        chat_messages.insert().values(booking_id=booking_id, sender_id=sender_id,
                                      sender_role=sender_role, message_type=message_type,
                                      content=content)
        .returning(*chat_messages.c))


async def list_chat_messages(conn: Connection, booking_id: str, *, page: int,
                             limit: int) -> tuple[list[Row], int]:
    total = await conn.scalar(select(func.count()).select_from(chat_messages)
                              .where(chat_messages.c.booking_id == booking_id))
    rows = await conn.fetch_all(
        select(chat_messages).where(chat_messages.c.booking_id == booking_id)
        .order_by(chat_messages.c.created_at, chat_messages.c.id)
        .limit(limit).offset((page - 1) * limit))
    return rows, int(total or 0)


# ---------------------------------------------------------------- shared trips

async def create_share(conn: Connection, *, booking_id: str, created_by: str, token: str,
                       expires_at: datetime) -> Row:
    return await conn.fetch_one(
        shared_trips.insert().values(booking_id=booking_id, created_by=created_by,
                                     share_token=token, expires_at=expires_at)
        .returning(*shared_trips.c))


async def get_share(conn: Connection, token: str) -> Row | None:
    return await conn.fetch_one(select(shared_trips).where(shared_trips.c.share_token == token))
