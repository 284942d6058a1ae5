"""Records and tables of the runner domain: runner profiles, crates, live positions, pet shops.

Runners are identified in events and tables by their **user id** (the id in their JWT), so a
booking's `runner_id` and a GPS fix's `runner_id` are the same value. The profile row's own `id`
is only exposed as RunnerDTO.id.
"""

from __future__ import annotations

import faust
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    Numeric,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

from models.base import metadata, point_col, timestamps, uuid_col, uuid_pk, version_col

runners = Table(
    "runners", metadata,
    uuid_pk(),
    uuid_col("user_id", nullable=False, unique=True),
    Column("full_name", String(255), nullable=False),
    Column("phone", String(20), nullable=False),
    Column("vehicle_type", String(20), nullable=False),
    Column("vehicle_plate", String(20), nullable=False),
    Column("vehicle_model", String(100), nullable=False),
    Column("vehicle_year", Integer),  # optional since migration 0016 (NULL: not given)
    Column("air_conditioned", Boolean, nullable=False, server_default="false"),
    Column("session_status", String(20), nullable=False, server_default="inactive"),
    Column("rating", Numeric(3, 2), nullable=False, server_default="0"),
    Column("total_trips", Integer, nullable=False, server_default="0"),
    Column("completion_rate", Numeric(3, 2), nullable=False, server_default="1.0"),
    version_col(),
    *timestamps(),
)

crate_specs = Table(
    "crate_specs", metadata,
    uuid_pk(),
    uuid_col("runner_id", nullable=False),
    Column("size", String(20), nullable=False),
    Column("pet_types", JSONB, nullable=False, server_default="[]"),
    Column("max_weight_kg", Numeric(6, 2), nullable=False),
    Column("width_cm", Numeric(6, 2)),
    Column("height_cm", Numeric(6, 2)),
    Column("depth_cm", Numeric(6, 2)),
    Column("ventilated", Boolean, nullable=False, server_default="false"),
    Column("temperature_controlled", Boolean, nullable=False, server_default="false"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Last known position of each runner, keyed by user id; written by the GPS sink (and by
# go-online), read by nearby search.
runner_locations = Table(
    "runner_locations", metadata,
    uuid_col("runner_id", primary_key=True),
    point_col("location", nullable=False),
    Column("speed_kmh", Float, nullable=False, server_default="0"),
    Column("heading_degrees", Float, nullable=False, server_default="0"),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

pet_shops = Table(
    "pet_shops", metadata,
    uuid_pk(),
    uuid_col("owner_id"),
    Column("name", String(255), nullable=False),
    Column("address", Text, nullable=False),
    point_col("location", nullable=False),
    Column("phone", String(20), nullable=False, server_default=""),
    Column("email", String(255), nullable=False, server_default=""),
    Column("category", String(20), nullable=False),
    Column("services", JSONB, nullable=False, server_default="[]"),
    Column("rating", Numeric(3, 2), nullable=False, server_default="0"),
    Column("image_url", Text, nullable=False, server_default=""),
    Column("opening_hours", String(100), nullable=False, server_default=""),
    Column("description", Text, nullable=False, server_default=""),
    *timestamps(),
)


class RunnerPosition(faust.Record, serializer="json", include_metadata=False):
    """A runner's last accepted GPS fix, as kept in the `runner-positions` table."""

    runner_id: str
    latitude: float
    longitude: float
    speed_kmh: float
    heading_degrees: float
    timestamp: float  # epoch seconds of the fix (device time)
    booking_id: str = ""


def _number(data: dict, key: str, default: float | None = None) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"'{key}' must be a number")
    return float(value)


def fix_timestamp(data: dict) -> float:
    """Epoch seconds of a fix: `timestamp` as RFC 3339 text or epoch seconds/milliseconds."""
    from datetime import datetime

    raw = data.get("timestamp") or data.get("occurred_at")
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw) / 1000.0 if raw > 1e11 else float(raw)
    if isinstance(raw, str) and raw:
        try:
            return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
        except ValueError as exc:
            raise ValueError("'timestamp' is not RFC 3339") from exc
    raise ValueError("'timestamp' is missing")


def parse_fix(data: dict) -> RunnerPosition:
    """Validate a `runner.location_update` payload (pure; raises ValueError with a reason).

    Coordinates must be in range; a negative speed becomes 0 and a heading outside [0, 360]
    becomes 0, as the earlier implementation did."""
    runner_id = data.get("runner_id")
    if not isinstance(runner_id, str) or not runner_id:
        raise ValueError("'runner_id' is missing")
    lat = _number(data, "latitude")
    lng = _number(data, "longitude")
    if not -90 <= lat <= 90 or not -180 <= lng <= 180:
        raise ValueError("coordinates out of range")
    speed = _number(data, "speed_kmh", 0.0)
    heading = _number(data, "heading_degrees", 0.0)
    return RunnerPosition(
        runner_id=runner_id, latitude=lat, longitude=lng,
        speed_kmh=speed if speed >= 0 else 0.0,
        heading_degrees=heading if 0 <= heading <= 360 else 0.0,
        timestamp=fix_timestamp(data), booking_id=str(data.get("booking_id") or ""),
    )


def is_newer(fix: RunnerPosition, last: RunnerPosition | None) -> bool:
    """Out-of-order and duplicate fixes (not strictly newer than the last) are ignored."""
    return last is None or fix.timestamp > last.timestamp
