"""Pure rules of the runner domain: runner profiles, presence, GPS input, crates, pet shops.

No I/O here: the views parse a request, ask these functions, then persist and publish.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass
from typing import Any

from domain.booking import ACCEPTED, DELIVERED, IN_PROGRESS
from domain.tracking import haversine_km

# What runners usually drive: the contract intended `car|van|motorcycle`, the runner application
# form (identity) offers `motorbike|car|bicycle`. Not enforced on profiles (free text, as in the
# original, so no app's own naming is refused).
VEHICLE_TYPES = ("car", "van", "motorcycle", "motorbike", "bicycle")
# Crate sizes, as a booking's crate requirement names them (reference §3.3).
CRATE_SIZES = ("small", "medium", "large", "xlarge")
SHOP_CATEGORIES = ("grooming", "vet", "boarding", "pet_store")

SESSION_ACTIVE = "active"
SESSION_INACTIVE = "inactive"

DEFAULT_RUNNER_RADIUS_KM = 5.0
DEFAULT_SHOP_RADIUS_KM = 10.0
MAX_RADIUS_KM = 100.0
NEARBY_LIMIT = 20
SHOP_LIST_LIMIT = 50


class RuleViolation(ValueError):
    """A request that breaks a domain rule; the message is the contract's error text."""


def valid_latitude(value: float) -> bool:
    return math.isfinite(value) and -90.0 <= value <= 90.0


def valid_longitude(value: float) -> bool:
    return math.isfinite(value) and -180.0 <= value <= 180.0


def valid_radius(value: float) -> bool:
    """Search radius in km: positive and at most MAX_RADIUS_KM (bounds the index scan)."""
    return math.isfinite(value) and 0.0 < value <= MAX_RADIUS_KM


def check_coordinates(latitude: float, longitude: float) -> None:
    if not valid_latitude(latitude):
        raise RuleViolation("invalid latitude")
    if not valid_longitude(longitude):
        raise RuleViolation("invalid longitude")


@dataclass(frozen=True)
class Fix:
    """A GPS fix as posted by a runner's device."""

    latitude: float
    longitude: float
    speed_kmh: float = 0.0
    heading_degrees: float = 0.0


def check_fix(fix: Fix) -> Fix:
    """Coordinates in range and finite numbers, else RuleViolation; returns the fix with a
    negative speed as 0 and a heading outside 0–360 as 0 (the original's waypoint rule).
    Devices send -1 for "unknown" (iOS CoreLocation's speed and course), so those fixes are
    kept rather than refused."""
    check_coordinates(fix.latitude, fix.longitude)
    if not math.isfinite(fix.speed_kmh):
        raise RuleViolation("invalid speed_kmh")
    if not math.isfinite(fix.heading_degrees):
        raise RuleViolation("invalid heading_degrees")
    speed = max(fix.speed_kmh, 0.0)
    heading = fix.heading_degrees if 0.0 <= fix.heading_degrees <= 360.0 else 0.0
    return Fix(fix.latitude, fix.longitude, speed, heading)


def check_can_update_location(session_status: str) -> None:
    """Only an online runner reports positions through the API."""
    if session_status != SESSION_ACTIVE:
        raise RuleViolation("runner must be online to update location")


# ------------------------------------------------------------------ privacy (DESIGN 14)

# Bookings whose owner may see the runner's phone, plate and full name: the runner has accepted
# and the job is not over (the owner needs to reach the runner at pick-up and hand-over).
CONTACT_STATUSES = (ACCEPTED, IN_PROGRESS, DELIVERED)
# Nearby search never works on the true position. It uses a stand-in point: the centre of the
# runner's grid cell (about 110 m), moved by a secret-keyed offset of 150-250 m. The offset is
# stable for as long as the runner stays in the cell, so averaging many answers does not
# converge on the truth, and finding where the shown distance flips (which pins the stand-in
# point to the metre) still leaves the true position at least 150 m - 79 m (the half-diagonal
# of a cell) away.
GRID_DEGREES = 0.001
OFFSET_MIN_M = 150.0
OFFSET_MAX_M = 250.0
# How much farther than the asked radius true positions are fetched, so that every runner
# whose stand-in point is inside the radius is found.
SEARCH_MARGIN_KM = (OFFSET_MAX_M + 100.0) / 1000.0
DISTANCE_STEP_KM = 0.1
METRES_PER_DEGREE = 111_195.0


def snap(value: float) -> float:
    """The centre of the grid cell a coordinate falls in."""
    return (math.floor(value / GRID_DEGREES) + 0.5) * GRID_DEGREES


def stand_in_point(key: bytes, runner_id: str, latitude: float, longitude: float
                   ) -> tuple[float, float]:
    """Where nearby search places a runner: never closer than about 70 m to the true position,
    never farther than about 330 m. `key` is a deployment secret, so the offset cannot be
    computed (and removed) by a client."""
    cell_lat, cell_lng = snap(latitude), snap(longitude)
    digest = hmac.new(key, f"{runner_id}|{cell_lat:.4f}|{cell_lng:.4f}".encode(),
                      hashlib.sha256).digest()
    bearing = int.from_bytes(digest[:4], "big") / 2**32 * 2 * math.pi
    fraction = int.from_bytes(digest[4:8], "big") / 2**32
    metres = OFFSET_MIN_M + fraction * (OFFSET_MAX_M - OFFSET_MIN_M)
    dlat = metres * math.cos(bearing) / METRES_PER_DEGREE
    dlng = metres * math.sin(bearing) / (METRES_PER_DEGREE * max(math.cos(math.radians(cell_lat)), 0.01))
    lat = max(-90.0, min(90.0, cell_lat + dlat))
    lng = (cell_lng + dlng + 180.0) % 360.0 - 180.0
    return lat, lng


def coarse_distance_km(from_lat: float, from_lng: float, to_lat: float, to_lng: float) -> float:
    """Distance shown by nearby search: kilometres to the stand-in point, in 0.1 km steps."""
    km = haversine_km(from_lat, from_lng, to_lat, to_lng)
    return round(round(km / DISTANCE_STEP_KM) * DISTANCE_STEP_KM, 1)


def rank_nearby(key: bytes, latitude: float, longitude: float, radius_km: float,
                candidates: list[dict[str, Any]], limit: int = NEARBY_LIMIT) -> list[dict[str, Any]]:
    """Nearby search on stand-in points: each candidate (with `user_id` and its true
    `latitude`/`longitude`) gets `distance_km` to its stand-in point; those within the radius
    are returned nearest first (ties: better rating first), at most `limit`. The true
    coordinates are removed from the returned dicts."""
    ranked = []
    for row in candidates:
        spot = stand_in_point(key, str(row["user_id"]), row.pop("latitude"), row.pop("longitude"))
        distance = coarse_distance_km(latitude, longitude, *spot)
        if distance <= radius_km:
            ranked.append({**row, "distance_km": distance})
    ranked.sort(key=lambda r: (r["distance_km"], -float(r.get("rating") or 0), str(r["id"])))
    return ranked[:limit]


def first_name(full_name: str | None) -> str:
    """What other users see of a runner's name. A name that fell back to the email (see
    profile_defaults) shows only the part before the @."""
    parts = (full_name or "").split()
    return parts[0].partition("@")[0] if parts else ""


def may_see_contact(role: str, viewer_id: str, runner_user_id: str,
                    has_accepted_booking: bool) -> bool:
    """Phone, plate, full name and precise position: for admins, the runner themself, and the
    owner of a booking the runner has accepted and not yet finished."""
    return role == "admin" or str(viewer_id) == str(runner_user_id) or has_accepted_booking


def profile_defaults(full_name: str | None, phone: str | None,
                     user: dict[str, Any] | None, email: str) -> tuple[str, str]:
    """A runner's name and phone: as given, else from their user account, else email / "".

    The web runner dashboard registers runners without `full_name`/`phone`; the user account
    already has both, so the profile copies them instead of rejecting the request.
    """
    user = user or {}
    name = full_name or user.get("full_name") or email
    tel = phone or user.get("phone") or ""
    return str(name), str(tel)


def changed_fields(patch: dict[str, Any]) -> dict[str, Any]:
    """A partial update: keys that are absent, None or "" leave the stored value unchanged
    (the contract's update semantics: zero values mean "not given")."""
    return {k: v for k, v in patch.items() if v is not None and v != ""}


def can_manage_shop(shop_owner_id: object, user_id: str, role: str) -> bool:
    """A shop is edited by the account that created it; admins may edit any shop.
    Ids are compared as text (the database driver hands back `uuid.UUID` objects)."""
    return role == "admin" or (shop_owner_id is not None and str(shop_owner_id) == str(user_id))
