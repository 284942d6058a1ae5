"""Records and tables of the tracking domain: trip tracks, waypoints, chat, shared trips.

A track is created when a booking is accepted and follows it to completion or cancellation.
Waypoints carry a `geography(Point,4326)` (GIST-indexed, used for the route) next to the plain
latitude/longitude the DTOs show; `(trip_track_id, recorded_at)` is unique so a redelivered GPS
fix is never stored twice.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import UUID

from models.base import metadata, point_col, timestamps, uuid_col, uuid_pk, version_col

TRACK_STATUSES = ("active", "completed", "cancelled")

trip_tracks = Table(
    "trip_tracks", metadata,
    uuid_pk(),
    uuid_col("booking_id", nullable=False, unique=True),
    uuid_col("runner_id", nullable=False, index=True),
    uuid_col("owner_id"),
    Column("status", String(20), nullable=False, server_default="active", index=True),
    Column("total_distance_km", Numeric(10, 3), nullable=False, server_default="0"),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("completed_at", DateTime(timezone=True)),
    Column("cancelled_at", DateTime(timezone=True)),
    version_col(),
    *timestamps(),
)

waypoints = Table(
    "waypoints", metadata,
    uuid_pk(),
    Column("trip_track_id", UUID(as_uuid=False),
           ForeignKey("trip_tracks.id", ondelete="CASCADE"), nullable=False),
    point_col("location", nullable=False),
    Column("latitude", Float, nullable=False),
    Column("longitude", Float, nullable=False),
    Column("speed_kmh", Float, nullable=False, server_default="0"),
    Column("heading_degrees", Float, nullable=False, server_default="0"),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("trip_track_id", "recorded_at", name="uq_waypoints_track_recorded"),
)

chat_messages = Table(
    "chat_messages", metadata,
    uuid_pk(),
    uuid_col("booking_id", nullable=False),
    uuid_col("sender_id", nullable=False),
    Column("sender_role", String(20), nullable=False),
    Column("message_type", String(20), nullable=False),
    Column("content", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_chat_messages_booking_created", "booking_id", "created_at"),
)

shared_trips = Table(
    "shared_trips", metadata,
    uuid_pk(),
    uuid_col("booking_id", nullable=False, index=True),
    uuid_col("created_by"),
    Column("share_token", String(64), nullable=False, unique=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
