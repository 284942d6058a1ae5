"""Tables of the booking domain: bookings, status history, decline reasons, pets, photos.

Addresses, pet spec and crate requirement are JSONB in the shapes of the BookingDTO; the pickup
point is also kept as `geography(Point,4326)` so runners can be offered the nearest jobs.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from models.base import metadata, point_col, timestamps, uuid_col, uuid_pk, version_col

bookings = Table(
    "bookings", metadata,
    uuid_pk(),
    Column("booking_number", String(20), nullable=False, unique=True),
    uuid_col("owner_id", nullable=False),
    uuid_col("runner_id"),
    Column("status", String(30), nullable=False, server_default="requested"),
    Column("pet_spec", JSONB, nullable=False),
    Column("crate_requirement", JSONB, nullable=False),
    Column("pickup_address", JSONB, nullable=False),
    Column("dropoff_address", JSONB, nullable=False),
    point_col("pickup_location", nullable=False),
    Column("route_spec", JSONB),
    Column("estimated_price_cents", BigInteger, nullable=False),
    Column("final_price_cents", BigInteger),
    Column("currency", String(3), nullable=False, server_default="MYR"),
    Column("scheduled_at", DateTime(timezone=True)),
    Column("accepted_at", DateTime(timezone=True)),
    Column("picked_up_at", DateTime(timezone=True)),
    Column("delivered_at", DateTime(timezone=True)),
    Column("cancelled_at", DateTime(timezone=True)),
    Column("cancel_note", String(500)),
    Column("notes", String(1000)),
    # The owner's dispute of a delivery (migration 0010): open while disputed_at is set and
    # dispute_resolved_at is not; an admin resolves it with outcome release or refund.
    Column("disputed_at", DateTime(timezone=True)),
    Column("dispute_reason", String(1000)),
    Column("dispute_resolved_at", DateTime(timezone=True)),
    Column("dispute_outcome", String(20)),
    Column("dispute_note", String(1000)),
    # Who completed it: owner, platform (auto-confirm after the window) or admin (dispute).
    Column("completed_by", String(20)),
    version_col(),
    *timestamps(),
    Index("ix_bookings_owner_status", "owner_id", "status"),
    Index("ix_bookings_runner_status", "runner_id", "status"),
    Index("ix_bookings_status_created", "status", text("created_at DESC")),
)

booking_status_history = Table(
    "booking_status_history", metadata,
    uuid_pk(),
    uuid_col("booking_id", nullable=False, index=True),
    Column("from_status", String(30)),
    Column("to_status", String(30), nullable=False),
    uuid_col("changed_by"),
    Column("reason", String(500)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

booking_decline_reasons = Table(
    "booking_decline_reasons", metadata,
    uuid_pk(),
    uuid_col("booking_id", nullable=False, index=True),
    uuid_col("runner_id", nullable=False, index=True),
    Column("reason", Text, nullable=False),
    Column("declined_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

pets = Table(
    "pets", metadata,
    uuid_pk(),
    uuid_col("owner_id", nullable=False, index=True),
    Column("name", String(100), nullable=False),
    Column("pet_type", String(20), nullable=False),
    Column("breed", String(100), nullable=False, server_default=""),
    Column("weight_kg", Numeric(5, 2), nullable=False, server_default="0"),
    Column("age_months", Integer, nullable=False, server_default="0"),
    Column("allergies", Text, nullable=False, server_default=""),
    Column("special_needs", Text, nullable=False, server_default=""),
    Column("notes", Text, nullable=False, server_default=""),
    Column("photo_url", Text, nullable=False, server_default=""),
    Column("vaccination_status", String(50), nullable=False, server_default=""),
    Column("status", String(20), nullable=False, server_default="active"),
    version_col(),
    *timestamps(),
)

booking_photos = Table(
    "booking_photos", metadata,
    uuid_pk(),
    uuid_col("booking_id", nullable=False, index=True),
    uuid_col("runner_id", nullable=False),
    Column("photo_type", String(20), nullable=False),
    Column("photo_url", Text, nullable=False),
    Column("caption", Text, nullable=False, server_default=""),
    Column("taken_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
