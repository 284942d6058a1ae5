"""Job offers to nearby runners (pure, no I/O): which runners a paid, unassigned booking is
offered to, and how the search widens.

Availability entries (one per runner, kept from `runner.events` in the `runner-availability`
table) are dicts `{runner_id, online, latitude, longitude, updated_at, crates}`, where `crates`
lists the runner's registered crates as `{size, pet_types, max_weight_kg, ventilated,
temperature_controlled}`.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from domain.runner import CRATE_SIZES
from domain.tracking import haversine_km

OFFERS_PER_ROUND = 5
FIRST_RADIUS_KM = 10.0
# The radius doubles each round nobody accepted, up to this; the search then ends.
MAX_RADIUS_KM = 40.0
# How long a round waits for an acceptance before the radius widens.
ROUND_WAIT_S = 60.0

_OFFER_NS = uuid.UUID("d8a4f0f5-6f0e-4b8e-9a3c-2a1f5e7c4b60")

Availability = dict[str, Any]


@dataclass(frozen=True)
class Candidate:
    runner_id: str
    distance_km: float


def radius_for_round(round_no: int) -> float:
    """Round 1 searches FIRST_RADIUS_KM, each later round twice the previous, capped."""
    return min(FIRST_RADIUS_KM * 2 ** max(round_no - 1, 0), MAX_RADIUS_KM)


def last_round(round_no: int) -> bool:
    return radius_for_round(round_no) >= MAX_RADIUS_KM


def _size_rank(size: Any) -> int:
    try:
        return CRATE_SIZES.index(str(size))
    except ValueError:
        return -1


def crate_fits(crate: Mapping[str, Any], pet_type: str, requirement: Mapping[str, Any]) -> bool:
    """A crate carries the pet: big enough, strong enough, ventilated / temperature controlled
    when the pet needs it, and meant for the pet's type (a crate naming no types takes any)."""
    if _size_rank(crate.get("size")) < _size_rank(requirement.get("minimum_size") or "small"):
        return False
    try:
        if float(crate.get("max_weight_kg") or 0) < float(
                requirement.get("minimum_weight_capacity") or 0):
            return False
    except (TypeError, ValueError):
        return False
    if requirement.get("needs_ventilation") and not crate.get("ventilated"):
        return False
    if requirement.get("needs_temp_control") and not crate.get("temperature_controlled"):
        return False
    types = [str(t).lower() for t in crate.get("pet_types") or []]
    return not types or pet_type.lower() in types


def can_carry(runner: Availability, pet_type: str, requirement: Mapping[str, Any]) -> bool:
    return any(crate_fits(c, pet_type, requirement) for c in runner.get("crates") or [])


def nearest_fitting(runners: Iterable[Availability], pickup: tuple[float, float],
                    pet_type: str, requirement: Mapping[str, Any], radius_km: float,
                    exclude: set[str], limit: int = OFFERS_PER_ROUND) -> list[Candidate]:
    """The `limit` nearest online runners within `radius_km` of the pickup whose crates fit
    the pet, leaving out those in `exclude` (already offered), nearest first."""
    found: list[Candidate] = []
    for runner in runners:
        runner_id = runner.get("runner_id")
        if not runner_id or runner_id in exclude or not runner.get("online"):
            continue
        lat, lng = runner.get("latitude"), runner.get("longitude")
        if not isinstance(lat, int | float) or not isinstance(lng, int | float):
            continue
        distance = haversine_km(pickup[0], pickup[1], lat, lng)
        if distance > radius_km or not math.isfinite(distance):
            continue
        if can_carry(runner, pet_type, requirement):
            found.append(Candidate(runner_id, distance))
    found.sort(key=lambda c: (c.distance_km, c.runner_id))
    return found[:limit]


def offer_event_id(booking_id: str, runner_id: str) -> str:
    """One id per booking and runner: the runner is told about a booking at most once."""
    return str(uuid.uuid5(_OFFER_NS, f"{booking_id}:{runner_id}"))


def distance_text(km: float) -> str:
    """How far the job is, as the push says it: `0.8` or `12` (km)."""
    return f"{km:.1f}" if km < 10 else f"{km:.0f}"


# ---------------------------------------------------------------- availability entries

def apply_runner_event(entry: Availability | None, runner_id: str, type_: str,
                       data: Mapping[str, Any], at: float) -> Availability | None:
    """Fold one `runner.events` event into the runner's availability; None when the event
    changes nothing worth writing (most GPS fixes of a runner who barely moved)."""
    current: Availability = dict(entry) if entry else {
        "runner_id": runner_id, "online": False, "latitude": None, "longitude": None,
        "updated_at": 0.0, "crates": []}
    out = dict(current)
    if type_ == "runner.online":
        out.update(online=True, updated_at=at)
        if "crates" in data:
            out["crates"] = list(data.get("crates") or [])
    elif type_ == "runner.offline":
        out.update(online=False, updated_at=at)
    elif type_ == "runner.crates_updated":
        out["crates"] = list(data.get("crates") or [])
    elif type_ == "runner.location_update":
        # Only online runners post fixes (web/runner.py), so a fix also says "online": an
        # `runner.online` lost from this view is repaired by the next fix.
        out["online"] = True
    else:
        return None
    lat, lng = data.get("latitude"), data.get("longitude")
    if isinstance(lat, int | float) and isinstance(lng, int | float) and (
            type_ != "runner.location_update" or _moved(current, lat, lng)
            or not current["online"]):
        out.update(latitude=float(lat), longitude=float(lng), updated_at=at)
    return out if out != current else None


# A runner's position is rewritten when it moved this far: offers need a rough distance, and
# every write is read by every worker.
MOVE_THRESHOLD_KM = 0.1


def _moved(entry: Availability, lat: float, lng: float) -> bool:
    if entry.get("latitude") is None or entry.get("longitude") is None:
        return True
    return haversine_km(entry["latitude"], entry["longitude"], lat, lng) >= MOVE_THRESHOLD_KM


def crate_summary(crate: Mapping[str, Any]) -> dict[str, Any]:
    """What offers need of a registered crate (events carry it so no query is needed later)."""
    return {"size": crate.get("size"), "pet_types": list(crate.get("pet_types") or []),
            "max_weight_kg": float(crate.get("max_weight_kg") or 0),
            "ventilated": bool(crate.get("ventilated")),
            "temperature_controlled": bool(crate.get("temperature_controlled"))}
