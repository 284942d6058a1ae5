"""Booking rules with no I/O: state machine, pricing, crate requirement, booking numbers,
who may do what, and the events each transition produces (reference §3.1–3.3, §4.2).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

# ---------------------------------------------------------------- statuses and transitions

REQUESTED = "requested"
ACCEPTED = "accepted"
IN_PROGRESS = "in_progress"
DELIVERED = "delivered"
COMPLETED = "completed"
CANCELLED = "cancelled"
STATUSES = (REQUESTED, ACCEPTED, IN_PROGRESS, DELIVERED, COMPLETED, CANCELLED)

TRANSITIONS: dict[str, frozenset[str]] = {
    REQUESTED: frozenset({ACCEPTED, CANCELLED}),
    ACCEPTED: frozenset({IN_PROGRESS, CANCELLED, REQUESTED}),  # → requested = runner decline
    IN_PROGRESS: frozenset({DELIVERED, CANCELLED}),
    DELIVERED: frozenset({COMPLETED}),
    COMPLETED: frozenset(),
    CANCELLED: frozenset(),
}

# Status filter aliases clients send (`?status=active` in the iOS owner app).
STATUS_ALIASES: dict[str, tuple[str, ...]] = {"active": (ACCEPTED, IN_PROGRESS)}

DECLINE_REASONS = ("too_far", "cannot_transport", "already_busy", "pickup_issue", "other")
PHOTO_TYPES = ("pickup", "delivery")
NIL_UUID = "00000000-0000-0000-0000-000000000000"
CURRENCY = "MYR"
LOCAL_TZ = ZoneInfo("Asia/Kuala_Lumpur")


class BookingRuleError(ValueError):
    """Input that breaks a booking rule (→ 400 with the message)."""


class InvalidTransition(Exception):
    """`current` → `target` is not allowed by the state machine (→ 422)."""

    def __init__(self, current: str, target: str) -> None:
        super().__init__(f"cannot transition from '{current}' to '{target}'")
        self.current = current
        self.target = target


class NotAllowed(Exception):
    """The caller may not perform this action on this booking (→ 403 with the message)."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


def can_transition(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


def check_transition(current: str, target: str) -> None:
    if not can_transition(current, target):
        raise InvalidTransition(current, target)


def parse_status_filter(raw: str | None) -> tuple[str, ...] | None:
    """`?status=` → the statuses to list (None = all). Comma lists and `active` are accepted."""
    if raw is None or raw.strip() == "":
        return None
    out: list[str] = []
    for part in raw.split(","):
        name = part.strip().lower()
        if name in STATUS_ALIASES:
            out.extend(STATUS_ALIASES[name])
        elif name in STATUSES:
            out.append(name)
        else:
            raise BookingRuleError("invalid status")
    return tuple(dict.fromkeys(out))


# ---------------------------------------------------------------- pets, crates, pricing

PET_SURCHARGE_CENTS: dict[str, int] = {
    "dog": 500, "cat": 300, "bird": 200, "reptile": 800, "rabbit": 300, "other": 500,
}
# The owner apps offer `hamster` and `fish`; the original rejected them. We accept them and price
# them like `other` (the type is kept as sent, so the owner sees what they chose).
PRICED_AS_OTHER = frozenset({"hamster", "fish"})
PET_TYPES = (*PET_SURCHARGE_CENTS, *sorted(PRICED_AS_OTHER))
CRATE_SURCHARGE_CENTS: dict[str, int] = {"small": 0, "medium": 500, "large": 1000, "xlarge": 2000}
BASE_FARE_CENTS = 500
PER_KM_CENTS = 250
EARTH_RADIUS_KM = 6371.0


def normalise_pet_type(pet_type: str) -> str:
    """The pet type in lower case, or BookingRuleError `invalid pet type: X`."""
    value = (pet_type or "").strip().lower()
    if value not in PET_SURCHARGE_CENTS and value not in PRICED_AS_OTHER:
        raise BookingRuleError(f"invalid pet type: {pet_type}")
    return value


def pet_surcharge(pet_type: str) -> int:
    return PET_SURCHARGE_CENTS.get(pet_type, PET_SURCHARGE_CENTS["other"])


def crate_size(weight_kg: float) -> str:
    if weight_kg <= 5:
        return "small"
    if weight_kg <= 15:
        return "medium"
    if weight_kg <= 30:
        return "large"
    return "xlarge"


def crate_requirement(pet_type: str, weight_kg: float) -> dict[str, Any]:
    """§3.3: size by weight (5/15/30 kg), always ventilated, temperature control for reptiles."""
    return {
        "minimum_size": crate_size(weight_kg),
        "needs_ventilation": True,
        "needs_temp_control": pet_type == "reptile",
        "minimum_weight_capacity": weight_kg * 1.2,
    }


def haversine_km(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))


def estimate_price_cents(pickup: tuple[float, float], dropoff: tuple[float, float],
                         pet_type: str, minimum_crate_size: str) -> int:
    """§3.2: 500 + trunc(km × 250) + pet surcharge + crate surcharge (cents, MYR)."""
    km = haversine_km(pickup[0], pickup[1], dropoff[0], dropoff[1])
    return (BASE_FARE_CENTS + int(km * PER_KM_CENTS) + pet_surcharge(pet_type)
            + CRATE_SURCHARGE_CENTS[minimum_crate_size])


BOOKING_NUMBER_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def new_booking_number() -> str:
    return "BK-" + "".join(secrets.choice(BOOKING_NUMBER_ALPHABET) for _ in range(6))


# A booking is for now or the near future: a little slack for clocks and forms filled in
# slowly, and a horizon beyond which no runner plans (and dates stay in PostgreSQL's range).
SCHEDULE_SLACK = timedelta(minutes=5)
SCHEDULE_HORIZON = timedelta(days=90)


def parse_scheduled_at(raw: str | None, now: datetime) -> datetime | None:
    """RFC 3339, or ISO 8601 without an offset (what `DateTime.toIso8601String()` sends for a
    local time), read as Malaysia time; it must lie between `now` − 5 minutes and `now` + 90
    days."""
    if raw is None or raw == "":
        return None
    text = raw.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(text)
        if value.tzinfo is None:
            value = value.replace(tzinfo=LOCAL_TZ)
        in_window = now - SCHEDULE_SLACK <= value <= now + SCHEDULE_HORIZON
    except ValueError:
        raise BookingRuleError(
            "invalid scheduled_at: expected RFC 3339, e.g. 2026-02-12T09:00:00+08:00") from None
    except OverflowError:  # e.g. 9999-12-31T23:59:59-12:00 is past datetime's range in UTC
        in_window = False
    if not in_window:
        raise BookingRuleError(
            "scheduled_at must be between 5 minutes ago and 90 days from now")
    return value


@dataclass(frozen=True)
class Quote:
    pet_type: str
    crate: dict[str, Any]
    price_cents: int


def quote(pet_spec: Mapping[str, Any], pickup: Mapping[str, Any],
          dropoff: Mapping[str, Any]) -> Quote:
    """Validate a new booking's pet and addresses (the original's domain checks, in its order)
    and price it."""
    if not str(pet_spec.get("name") or "").strip():
        raise BookingRuleError("pet name is required")
    pet_type = normalise_pet_type(str(pet_spec.get("pet_type") or ""))
    weight = float(pet_spec.get("weight_kg") or 0)
    if weight <= 0:
        raise BookingRuleError("pet weight must be positive")
    if not pickup:
        raise BookingRuleError("pickup address is required")
    if not dropoff:
        raise BookingRuleError("dropoff address is required")
    crate = crate_requirement(pet_type, weight)
    price = estimate_price_cents(
        (float(pickup["latitude"]), float(pickup["longitude"])),
        (float(dropoff["latitude"]), float(dropoff["longitude"])),
        pet_type, crate["minimum_size"])
    if price <= 0:
        raise BookingRuleError("estimated price must be positive")
    return Quote(pet_type, crate, price)


# ---------------------------------------------------------------- who may do what

RUNNER_ACTIONS = frozenset({"pickup", "deliver", "photo"})


def is_participant(booking: Mapping[str, Any], user_id: str, role: str) -> bool:
    return role == "admin" or user_id in (booking["owner_id"], booking.get("runner_id"))


def may_view(booking: Mapping[str, Any], user_id: str, role: str) -> bool:
    """Participants and admins; any runner may also look at an open (requested, unassigned)
    booking, to decide whether to accept it."""
    if is_participant(booking, user_id, role):
        return True
    return role == "runner" and booking["status"] == REQUESTED and not booking.get("runner_id")


def check_actor(action: str, booking: Mapping[str, Any], user_id: str, role: str) -> None:
    """Raise NotAllowed unless the caller may perform `action` (role already checked)."""
    if action == "accept":
        return  # any runner may take an open job; the state machine decides the rest
    if action in RUNNER_ACTIONS or action == "decline":
        if booking.get("runner_id") != user_id:
            raise NotAllowed("not your booking")
        return
    if action == "confirm":
        if booking["owner_id"] != user_id:
            raise NotAllowed("forbidden", "only the booking's owner can confirm delivery")
        return
    if action == "dispute":
        if booking["owner_id"] != user_id:
            raise NotAllowed("forbidden", "only the booking's owner can dispute a delivery")
        return
    if action == "resolve":
        return  # admins only, checked with the role
    if action == "rebook":
        if booking["owner_id"] != user_id:
            raise NotAllowed("booking does not belong to this user")
        return
    if not is_participant(booking, user_id, role):  # view, photos, cancel
        raise NotAllowed("forbidden", "you are not a participant of this booking")


# ---------------------------------------------------------------- transitions and their events

SOURCE = "service-booking"
BOOKING_TOPIC = "booking.events"
RUNNER_TOPIC = "runner.events"


@dataclass
class Transition:
    """A decided change: the target status, the column changes, and the events to emit
    (`(topic, key, type, data)`), all applied in one transaction by the caller."""

    target: str
    changes: dict[str, Any]
    reason: str | None = None
    events: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)


def _iso(value: datetime) -> str:
    """RFC 3339 in UTC with the fraction trimmed, as the HTTP layer writes times."""
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def _base(b: Mapping[str, Any]) -> dict[str, Any]:
    return {"booking_id": b["id"], "booking_number": b["booking_number"]}


def requested_event(b: Mapping[str, Any]) -> tuple[str, str, str, dict[str, Any]]:
    return (BOOKING_TOPIC, b["id"], "booking.requested", {
        **_base(b), "owner_id": b["owner_id"], "pet_type": b["pet_spec"]["pet_type"],
        "pet_name": b["pet_spec"]["name"],
        "pickup_lat": b["pickup_address"]["latitude"],
        "pickup_lng": b["pickup_address"]["longitude"],
        "dropoff_lat": b["dropoff_address"]["latitude"],
        "dropoff_lng": b["dropoff_address"]["longitude"],
        "estimated_price_cents": b["estimated_price_cents"], "currency": b["currency"],
    })


def _released(runner_id: str, booking_id: str) -> tuple[str, str, str, dict[str, Any]]:
    return (RUNNER_TOPIC, runner_id, "runner.released",
            {"runner_id": runner_id, "booking_id": booking_id})


def _legs(b: Mapping[str, Any]) -> dict[str, Any]:
    """The trip's two targets, so the trip stage can give ETAs without reading the booking."""
    return {"pickup_lat": b["pickup_address"]["latitude"],
            "pickup_lng": b["pickup_address"]["longitude"],
            "dropoff_lat": b["dropoff_address"]["latitude"],
            "dropoff_lng": b["dropoff_address"]["longitude"]}


def accept(b: Mapping[str, Any], runner_id: str, now: datetime) -> Transition:
    check_transition(b["status"], ACCEPTED)
    return Transition(ACCEPTED, {"runner_id": runner_id, "accepted_at": now}, events=[
        (BOOKING_TOPIC, b["id"], "booking.accepted",
         {**_base(b), "runner_id": runner_id, "owner_id": b["owner_id"], **_legs(b)}),
        (RUNNER_TOPIC, runner_id, "runner.assigned",
         {"runner_id": runner_id, "booking_id": b["id"], **_legs(b)}),
    ])


def decline(b: Mapping[str, Any], reason: str) -> Transition:
    """accepted → requested; the original answers 409 (not 422) for any other state."""
    if b["status"] != ACCEPTED:
        raise DeclineConflict(b["status"])
    return Transition(REQUESTED, {"runner_id": None, "accepted_at": None}, reason=reason,
                      events=[_released(b["runner_id"], b["id"])])


class DeclineConflict(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(f"cannot decline booking in state '{status}'")


def pickup(b: Mapping[str, Any], now: datetime) -> Transition:
    check_transition(b["status"], IN_PROGRESS)
    return Transition(IN_PROGRESS, {"picked_up_at": now}, events=[
        (BOOKING_TOPIC, b["id"], "booking.pet_picked_up",
         {**_base(b), "runner_id": b["runner_id"], "owner_id": b["owner_id"],
          "picked_up_at": _iso(now)}),
    ])


def deliver(b: Mapping[str, Any], now: datetime) -> Transition:
    check_transition(b["status"], DELIVERED)
    return Transition(DELIVERED, {"delivered_at": now}, events=[
        (BOOKING_TOPIC, b["id"], "booking.delivery_confirmed",
         {**_base(b), "runner_id": b["runner_id"], "owner_id": b["owner_id"],
          "delivered_at": _iso(now)}),
        _released(b["runner_id"], b["id"]),
    ])


# Who completes a delivered booking, as the `confirmed_by` of `booking.completed`.
BY_OWNER, BY_PLATFORM, BY_ADMIN = "owner", "platform", "admin"
DISPUTE_RELEASE, DISPUTE_REFUND = "release", "refund"
DISPUTE_OUTCOMES = (DISPUTE_RELEASE, DISPUTE_REFUND)


class Disputed(Exception):
    """The booking's delivery is disputed: only an admin's resolution moves it (→ 409)."""

    def __init__(self) -> None:
        super().__init__("booking is under dispute")


class DisputeRefused(Exception):
    """A dispute or resolution that the booking's state does not allow (→ 422 with the message)."""


class NotPaid(Exception):
    """The booking's escrow is not held: no pickup of a pet nobody paid for (→ 422)."""

    def __init__(self, escrow_status: str | None) -> None:
        super().__init__("escrow not held")
        self.detail = (
            "the owner has not paid for this booking yet; a pet can be picked up only while its "
            "payment is held in escrow" if escrow_status in (None, "pending", "failed") else
            f"the payment for this booking is '{escrow_status}', not held in escrow")


def check_pickup_paid(escrow_status: str | None) -> None:
    """Pickup needs the booking's payment held in escrow (DESIGN 12)."""
    if escrow_status != "held":
        raise NotPaid(escrow_status)


def dispute_open(b: Mapping[str, Any]) -> bool:
    return b.get("disputed_at") is not None and b.get("dispute_resolved_at") is None


def confirm_deadline(b: Mapping[str, Any], window_hours: float) -> datetime | None:
    """When the platform confirms a delivered booking for its owner (None if not delivered)."""
    delivered_at = b.get("delivered_at")
    if delivered_at is None:
        return None
    return delivered_at + timedelta(hours=window_hours)


def complete(b: Mapping[str, Any], confirmed_by: str = BY_OWNER, reason: str | None = None,
             extra: Mapping[str, Any] | None = None) -> Transition:
    """delivered → completed: final = estimated. The owner's confirm, the platform's once the
    window has passed (`auto_confirmed`), or an admin's release of a dispute. The payment agent
    releases the escrow on the `booking.completed` this emits."""
    check_transition(b["status"], COMPLETED)
    if dispute_open(b) and confirmed_by != BY_ADMIN:
        raise Disputed()
    final = b["estimated_price_cents"]
    return Transition(COMPLETED, {"final_price_cents": final, "completed_by": confirmed_by,
                                  **(extra or {})},
                      reason=reason or f"confirmed by {confirmed_by}", events=[
        (BOOKING_TOPIC, b["id"], "booking.completed",
         {**_base(b), "runner_id": b.get("runner_id") or NIL_UUID, "owner_id": b["owner_id"],
          "final_price_cents": final, "currency": b["currency"],
          "confirmed_by": confirmed_by, "auto_confirmed": confirmed_by == BY_PLATFORM}),
    ])


def auto_confirm(b: Mapping[str, Any], now: datetime, window_hours: float) -> Transition | None:
    """The platform's confirm on the owner's behalf, or None when it does not apply (no longer
    delivered, disputed, or the window has not passed): safe to ask again and again."""
    deadline = confirm_deadline(b, window_hours)
    if b["status"] != DELIVERED or b.get("disputed_at") is not None:
        return None
    if deadline is None or now < deadline:
        return None
    return complete(b, BY_PLATFORM, "auto-confirmed: the owner did not confirm or dispute "
                    f"within {window_hours:g} h")


def dispute(b: Mapping[str, Any], reason: str, now: datetime, window_hours: float) -> Transition:
    """The owner disputes the delivery: the booking stays `delivered`, the escrow stays held
    (no auto-confirm, no release) until an admin resolves it."""
    if b["status"] != DELIVERED:
        raise DisputeRefused(f"only a delivered booking can be disputed (it is '{b['status']}')")
    if b.get("disputed_at") is not None:
        raise DisputeRefused("this delivery has already been disputed")
    deadline = confirm_deadline(b, window_hours)
    if deadline is not None and now >= deadline:
        raise DisputeRefused("the dispute window for this delivery has closed")
    return Transition(DELIVERED, {"disputed_at": now, "dispute_reason": reason},
                      reason=f"disputed: {reason}", events=[
        (BOOKING_TOPIC, b["id"], "booking.disputed",
         {**_base(b), "owner_id": b["owner_id"], "runner_id": b.get("runner_id") or NIL_UUID,
          "reason": reason, "disputed_at": _iso(now)}),
    ])


def resolve_dispute(b: Mapping[str, Any], outcome: str, note: str, admin_id: str,
                    now: datetime) -> Transition:
    """An admin ends an open dispute. `release`: completed (runner paid on `booking.completed`);
    `refund`: cancelled (owner refunded on `booking.cancelled`, the escrow's existing refund)."""
    if not dispute_open(b) or b["status"] != DELIVERED:
        raise DisputeRefused("this booking has no open dispute")
    resolution = {"dispute_resolved_at": now, "dispute_outcome": outcome,
                  "dispute_note": note or None}
    text = f"dispute resolved: {outcome}" + (f": {note}" if note else "")
    if outcome == DISPUTE_RELEASE:
        return complete(b, BY_ADMIN, text, resolution)
    # delivered → cancelled exists only here (not in TRANSITIONS: nobody else may cancel a
    # delivered booking). The runner was already released on delivery.
    return Transition(CANCELLED, {**resolution, "cancelled_at": now, "cancel_note": text[:500]},
                      reason=text, events=[
        (BOOKING_TOPIC, b["id"], "booking.cancelled",
         {**_base(b), "cancelled_by": admin_id, "reason": text, "owner_id": b["owner_id"],
          "runner_id": b.get("runner_id"), "dispute_outcome": outcome}),
    ])


def cancel(b: Mapping[str, Any], cancelled_by: str, reason: str, now: datetime) -> Transition:
    check_transition(b["status"], CANCELLED)
    runner_id = b.get("runner_id")
    events = [(BOOKING_TOPIC, b["id"], "booking.cancelled",
               {**_base(b), "cancelled_by": cancelled_by, "reason": reason,
                "owner_id": b["owner_id"], "runner_id": runner_id})]
    if runner_id:
        events.append(_released(runner_id, b["id"]))
    return Transition(CANCELLED, {"cancelled_at": now, "cancel_note": reason or None},
                      reason=reason or None, events=events)
