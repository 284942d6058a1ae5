"""Live ETA and arrival alerts of a trip (pure, no I/O).

A trip has two legs: to the pickup until the pet is picked up, then to the drop-off. Each
accepted GPS fix is turned into:
* the remaining straight-line distance to the current leg's target and an ETA from a smoothed
  speed (`eta_minutes`, `distance_remaining_km`, added to the live `location_update` frame);
* at most once per leg, the payload of `tracking.runner_arriving`, when the runner first comes
  within ARRIVING_RADIUS_KM of the target.

The figures live in the trip state (the `trips` table entry, see domain/tracking.py) under
these keys, all optional so that entries written before they existed keep working:
`pickup` / `dropoff` ([lat, lng] or None), `leg` ("pickup" | "dropoff"), `speed_avg_kmh`
(smoothed speed, None until the first moving fix) and `arrivals` ({leg: timestamp of the fix
that raised the alert}).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Any

from domain.tracking import Trip, haversine_km

PICKUP, DROPOFF = "pickup", "dropoff"
LEGS = (PICKUP, DROPOFF)
PLACES = {PICKUP: "pickup point", DROPOFF: "drop-off point"}

# Speed used when the runner is stationary or their speed is unknown: typical city traffic.
DEFAULT_SPEED_KMH = 20.0
# Below this smoothed speed the runner counts as stationary (waiting, loading, parked).
STATIONARY_KMH = 5.0
# Time constant of the speed smoothing: a fix's weight is 1 - exp(-dt / SPEED_TAU_S), so the
# average follows a change of pace within about a minute whatever the fix rate.
SPEED_TAU_S = 30.0
# Faster than any runner's vehicle: a derived speed above it comes from a GPS jump, not travel.
MAX_PLAUSIBLE_KMH = 300.0
# Within this distance of the target the runner has arrived: ETA 0.
ARRIVED_KM = 0.05
# The arrival alert's geofence.
ARRIVING_RADIUS_KM = 0.3

_ARRIVING_NS = uuid.UUID("0b7f1d52-93c4-4c2e-8a57-4f6de0a3c912")


@dataclass(frozen=True)
class Step:
    """What one accepted fix means for the trip's ETA: the trip state to keep, the fields to
    add to the live frame, and the arrival alert to publish (None most of the time)."""

    trip: Trip
    frame: dict[str, float] = field(default_factory=dict)
    arriving: dict[str, Any] | None = None


def point(lat: Any, lng: Any) -> list[float] | None:
    """A target as stored in the trip state, or None when the coordinates are missing."""
    try:
        lat_f, lng_f = float(lat), float(lng)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(lat_f) and math.isfinite(lng_f)):
        return None
    return [lat_f, lng_f]


def with_targets(trip: Trip, pickup: list[float] | None, dropoff: list[float] | None,
                 picked_up: bool = False) -> Trip:
    """The trip with its two targets and the leg it is on (a trip re-derived from its booking
    keeps the speed average and the alerts already raised)."""
    out = dict(trip)
    out.update(pickup=pickup, dropoff=dropoff,
               leg=DROPOFF if picked_up or trip.get("leg") == DROPOFF else PICKUP)
    out.setdefault("speed_avg_kmh", None)
    out.setdefault("arrivals", {})
    return out


def start_dropoff_leg(trip: Trip) -> Trip:
    """The pet is on board: from now on the ETA is to the drop-off."""
    return {**trip, "leg": DROPOFF}


def target_of(trip: Trip) -> list[float] | None:
    return trip.get(trip.get("leg") or PICKUP)


def observed_speed(trip: Trip, lat: float, lng: float, timestamp: float,
                   device_speed_kmh: float) -> float | None:
    """The fix's speed: the device's figure when it gives one, else distance over time since
    the previous fix (None on the first fix, or when the jump is not a plausible movement)."""
    if device_speed_kmh > 0:
        return min(device_speed_kmh, MAX_PLAUSIBLE_KMH)
    last_ts = trip.get("last_ts")
    if last_ts is None or timestamp <= last_ts:
        return None
    kmh = haversine_km(trip["last_lat"], trip["last_lng"], lat, lng) / (timestamp - last_ts) * 3600
    return kmh if kmh <= MAX_PLAUSIBLE_KMH else None


def smoothed_speed(previous: float | None, observed: float | None, dt_s: float) -> float | None:
    """Exponential moving average weighted by the time between fixes. The first observation
    is taken as is; an unknown observation leaves the average unchanged."""
    if observed is None:
        return previous
    if previous is None:
        return observed
    weight = 1.0 - math.exp(-max(dt_s, 0.0) / SPEED_TAU_S)
    return previous + weight * (observed - previous)


def speed_for_eta(smoothed_kmh: float | None) -> float:
    """The speed the ETA assumes: the smoothed speed, or the default while stationary/unknown."""
    if smoothed_kmh is None or smoothed_kmh < STATIONARY_KMH:
        return DEFAULT_SPEED_KMH
    return smoothed_kmh


def eta_minutes(distance_km: float, speed_kmh: float) -> float:
    """Minutes to cover `distance_km` at `speed_kmh`, 0 once within ARRIVED_KM."""
    if distance_km <= ARRIVED_KM:
        return 0.0
    return distance_km / speed_kmh * 60.0


def whole_minutes(minutes: float) -> int:
    """What the alert's text says: rounded up, at least 1."""
    return max(1, math.ceil(minutes - 1e-9))


def arriving_event_id(booking_id: str, leg: str) -> str:
    """One id per booking and leg: a re-published alert is recognised and not notified twice."""
    return str(uuid.uuid5(_ARRIVING_NS, f"{booking_id}:{leg}"))


def arriving_payload(trip: Trip, leg: str, distance_km: float, minutes: float,
                     timestamp: float) -> dict[str, Any]:
    n = whole_minutes(minutes)
    return {
        "track_id": trip.get("track_id"), "booking_id": trip.get("booking_id"),
        "runner_id": trip.get("runner_id"), "owner_id": trip.get("owner_id"),
        "leg": leg, "place": PLACES[leg], "distance_km": round(distance_km, 3),
        "eta_minutes": round(minutes, 1), "minutes": n,
        "minutes_text": "1 minute" if n == 1 else f"{n} minutes", "fix_timestamp": timestamp,
    }


def step(trip: Trip, lat: float, lng: float, timestamp: float, speed_kmh: float) -> Step:
    """Apply an accepted fix (newer than the trip's last point) to the ETA figures.

    Call it with the trip as it was before the fix (the previous point gives the derived
    speed); the caller then moves the trip's position (domain.tracking.advance)."""
    out = dict(trip)
    dt = timestamp - trip["last_ts"] if trip.get("last_ts") is not None else 0.0
    out["speed_avg_kmh"] = smoothed_speed(
        trip.get("speed_avg_kmh"), observed_speed(trip, lat, lng, timestamp, speed_kmh), dt)
    target = target_of(out)
    if target is None:
        return Step(out)
    distance = haversine_km(lat, lng, target[0], target[1])
    minutes = eta_minutes(distance, speed_for_eta(out["speed_avg_kmh"]))
    frame = {"eta_minutes": round(minutes, 1), "distance_remaining_km": round(distance, 3)}
    leg = out.get("leg") or PICKUP
    arrivals = dict(out.get("arrivals") or {})
    arriving = None
    # Once per leg: after the first entry into the geofence, leaving it (GPS jitter, a detour
    # around the block) and coming back raises nothing.
    if distance <= ARRIVING_RADIUS_KM and leg not in arrivals:
        arrivals[leg] = timestamp
        arriving = arriving_payload(out, leg, distance, minutes, timestamp)
    out["arrivals"] = arrivals
    return Step(out, frame, arriving)


def replayed_arrival(trip: Trip, lat: float, lng: float, timestamp: float) -> dict[str, Any] | None:
    """For a redelivered fix: the alert it raised the first time (to publish again, under the
    same id, in case the first publication was lost with a crash), else None."""
    for leg, ts in (trip.get("arrivals") or {}).items():
        target = trip.get(leg)
        if ts == timestamp and target is not None:
            distance = haversine_km(lat, lng, target[0], target[1])
            minutes = eta_minutes(distance, speed_for_eta(trip.get("speed_avg_kmh")))
            return arriving_payload(trip, leg, distance, minutes, timestamp)
    return None
