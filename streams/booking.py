"""Agents of the booking domain.

`payment.events` → `booking-payments`: `payment.escrow_released` completes a delivered booking
(final price = estimated) and emits `booking.completed`. `core.consuming.consume` runs each
event once per event id, in one transaction with its effects; a booking that is already
completed is left alone, so a second release event (another id) has no effect either.
"""

from __future__ import annotations

import logging
import uuid

from core.consuming import consume
from core.db import Connection
from domain import booking as rules
from kilat import app, payment_events
from models.events import CloudEvent, MalformedEvent, require
from stores import booking as store

log = logging.getLogger(__name__)
CONSUMER = "booking-payments"


async def on_escrow_released(conn: Connection, event: CloudEvent) -> None:
    require(event.data, "booking_id")
    booking_id = str(event.data["booking_id"])
    try:
        booking_id = str(uuid.UUID(booking_id))
    except ValueError:
        raise MalformedEvent(f"booking_id is not a UUID: {booking_id!r}") from None
    booking = await store.get_booking(conn, booking_id, for_update=True)
    if booking is None:
        log.warning("escrow released for unknown booking %s (event %s)", booking_id, event.id)
        return
    if booking["status"] != rules.DELIVERED:
        # Completed already (owner confirmed first) or not yet delivered: nothing to do.
        log.info("escrow released for booking %s in state %s: ignored", booking_id,
                 booking["status"])
        return
    await store.commit_transition(conn, booking,
                                  rules.complete(booking, "payment.escrow_released"), None)


@app.agent(payment_events, name="kilat.booking-payments", concurrency=1)
async def booking_on_payments(stream) -> None:
    await consume(stream, CONSUMER, {"payment.escrow_released": on_escrow_released})
