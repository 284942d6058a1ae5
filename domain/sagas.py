"""Pure rules of the money sagas in flight: which events open and close one, when one is
overdue, and what step the database says is still owed. No I/O.

A saga is opened when a booking reaches an outcome while its escrow holds the owner's money
(`booking.completed` → the release is owed, `booking.cancelled` → the refund is owed) and closed
by the payment event that settles it. One still open `bound` seconds after its outcome is
overdue: the reconciler then reads the booking and the payment and performs the owed step.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime
from typing import Any

from domain.booking import NIL_UUID
from domain.payment import HELD

RELEASE, REFUND = "release", "refund"

# What an overdue saga looked like when the reconciler found it (the metrics' `kind` label).
COMPLETED_BUT_HELD = "completed_escrow_held"
CAPTURED_NOT_RELEASED = "captured_not_released"
CANCELLED_NOT_REFUNDED = "cancelled_not_refunded"

_OPENS = {"booking.completed": RELEASE, "booking.cancelled": REFUND}
_SETTLING = ("payment.escrow_released", "payment.escrow_refunded")

# Every event type whose loss would leave money where it should not stay: a dead letter of one
# of these raises the saga alert.
SAGA_EVENT_TYPES = frozenset({*_OPENS, *_SETTLING, "payment.escrow_held", "payment.failed"})


def opened_by(event_type: str, data: dict[str, Any]) -> str | None:
    """The step a booking event makes owed (if its escrow holds money), or None."""
    step = _OPENS.get(event_type)
    if step == RELEASE and str(data.get("runner_id") or NIL_UUID) == NIL_UUID:
        return None  # completed without a runner: there is nobody to pay
    return step


def closed_by(event_type: str, data: dict[str, Any]) -> bool:
    """Whether a payment event settles the booking's saga: released, refunded, or a failure
    that left no money held (a failure with the money still held leaves it owed)."""
    if event_type in _SETTLING:
        return True
    return event_type == "payment.failed" and data.get("escrow_status", HELD) != HELD


def owed_step(booking_status: str | None, runner_id: str | None,
              escrow_status: str | None) -> str | None:
    """The step the records say is still owed: the escrow holds money of a completed booking
    with a runner (release) or of a cancelled booking (refund). Anything else: none."""
    if escrow_status != HELD:
        return None
    if booking_status == "completed" and runner_id and str(runner_id) != NIL_UUID:
        return RELEASE
    if booking_status == "cancelled":
        return REFUND
    return None


def open_saga(step: str, booking_id: str, since: float) -> dict[str, Any]:
    """The table entry of a saga in flight (JSON-friendly)."""
    return {"booking_id": booking_id, "step": step, "since": since}


def overdue(saga: dict[str, Any], now: float, bound_s: float) -> bool:
    return now - float(saga["since"]) >= bound_s


def kind_of(step: str, intent_status: str | None) -> str:
    """How an overdue saga is reported: a release whose capture went through at the provider is
    `captured_not_released` (only Kilat's records are behind)."""
    if step == REFUND:
        return CANCELLED_NOT_REFUNDED
    return CAPTURED_NOT_RELEASED if intent_status == "succeeded" else COMPLETED_BUT_HELD


def event_time(time: str, fallback: float) -> float:
    """Epoch seconds of an event's RFC 3339 `time` (the fallback when it cannot be read)."""
    try:
        return datetime.fromisoformat(time.replace("Z", "+00:00")).timestamp()
    except (AttributeError, ValueError):
        return fallback


def dead_letter_alert(record: dict[str, Any],
                      saga_consumers: Collection[str]) -> tuple[str, str] | None:
    """(consumer, event type) of a dead-letter record (core.consuming.dead_letter) that belongs
    to a money saga — rejected by a saga consumer, or a saga event whoever rejected it — else
    None."""
    consumer = str(record.get("consumer") or "")
    try:
        event = json.loads(record.get("value") or "{}")
        type_ = str(event.get("type") or "") if isinstance(event, dict) else ""
    except (TypeError, ValueError):
        type_ = ""
    if consumer in saga_consumers or type_ in SAGA_EVENT_TYPES:
        return consumer, type_ or "undecodable"
    return None
