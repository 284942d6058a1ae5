"""Trip tracking rules (pure, no I/O): distance, fix acceptance, trip state transitions.

Trip state is a plain dict (it lives in the `trips` Faust table as JSON):
`{booking_id, track_id, runner_id, owner_id, status, started_at, last_lat, last_lng, last_ts,
distance_km, waypoint_count}`.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

EARTH_RADIUS_KM = 6371.0
ACTIVE, COMPLETED, CANCELLED = "active", "completed", "cancelled"
MESSAGE_TYPES = ("text", "image", "quick_reply")
_UPDATE_NS = uuid.UUID("6f1c8c1e-5a9b-4d5e-9a61-3b3f0c7d2e10")

Trip = dict[str, Any]


def haversine_km(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance in km on a sphere of radius 6371 km (the contract's formula)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dlat = p2 - p1
    dlng = math.radians(lng2 - lng1)
    a = math.sin(dlat / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dlng / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))


def path_length_km(points: Iterable[tuple[float, float]]) -> float:
    """Sum of haversine legs between consecutive (lat, lng) points, in the given order."""
    total = 0.0
    prev: tuple[float, float] | None = None
    for lat, lng in points:
        if prev is not None:
            total += haversine_km(prev[0], prev[1], lat, lng)
        prev = (lat, lng)
    return total


def round_km(value: float) -> float:
    """Distances are reported with 3 decimals (metres)."""
    return round(value, 3)


def new_trip(*, booking_id: str, track_id: str, runner_id: str, owner_id: str,
             started_at: str) -> Trip:
    return {
        "booking_id": booking_id, "track_id": track_id, "runner_id": runner_id,
        "owner_id": owner_id, "status": ACTIVE, "started_at": started_at,
        "last_lat": None, "last_lng": None, "last_ts": None,
        "distance_km": 0.0, "waypoint_count": 0,
    }


class FixOutcome(StrEnum):
    ACCEPTED = "accepted"      # new point: count it, store it, publish it
    REPLAYED = "replayed"      # at or before the last point: already counted (redelivery)
    NO_TRIP = "no_trip"        # no trip or the trip is over: drop


def classify_fix(trip: Trip | None, timestamp: float) -> FixOutcome:
    """Fixes on a trip arrive in timestamp order (the runner stage drops stale ones), so a fix
    that is not newer than the last one is a redelivery of a point already counted."""
    if trip is None or trip.get("status") != ACTIVE:
        return FixOutcome.NO_TRIP
    last = trip.get("last_ts")
    if last is not None and timestamp <= last:
        return FixOutcome.REPLAYED
    return FixOutcome.ACCEPTED


def advance(trip: Trip, lat: float, lng: float, timestamp: float) -> Trip:
    """The trip after an accepted fix: distance from the previous point, count + 1."""
    out = dict(trip)
    if trip.get("last_ts") is not None:
        out["distance_km"] = trip["distance_km"] + haversine_km(
            trip["last_lat"], trip["last_lng"], lat, lng)
    out.update(last_lat=lat, last_lng=lng, last_ts=timestamp,
               waypoint_count=trip.get("waypoint_count", 0) + 1)
    return out


def update_event_id(booking_id: str, timestamp: float) -> str:
    """A stable id for the `tracking.updated` of one fix, so a re-publication is recognisable."""
    return str(uuid.uuid5(_UPDATE_NS, f"{booking_id}:{timestamp!r}"))


def finish(trip: Trip, status: str) -> Trip:
    """The trip once completed or cancelled (later fixes are dropped)."""
    return {**trip, "status": status}
