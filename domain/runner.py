"""Pure rules of the runner domain: runner profiles, presence, GPS input, crates, pet shops.

No I/O here: the views parse a request, ask these functions, then persist and publish.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

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


def distance_km(metres: float) -> float:
    """Distance as shown to clients: kilometres rounded to metres (3 decimals)."""
    return round(metres / 1000.0, 3)


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
