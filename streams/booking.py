"""Agents of the booking domain: the owner's confirmation window.

Money waits for the owner (DESIGN 12): `deliver` leaves the escrow held; the owner's confirm,
an admin's resolution of a dispute, or the platform once AUTO_CONFIRM_HOURS have passed
completes the booking, and the payment agent releases the escrow on `booking.completed`.

* `booking.events` → `booking-confirm-window`: `booking.delivery_confirmed` puts the booking in
  the `delivered-bookings` table; `booking.completed`, `booking.cancelled` and
  `booking.disputed` take it out. Events go through `core.consuming.consume` (dead letters,
  gap read-back, own position stored with the processed-event claim); the table write is
  flushed to its changelog before that claim commits, and puts and deletes are idempotent, so
  a crash can repeat a write but not lose one.
* Timer `booking-auto-confirm`: on every worker, for the entries of partitions it actively
  owns whose window has passed, confirm on the owner's behalf (`booking.completed` with
  `confirmed_by: "platform"`, `auto_confirmed: true`). The decision is re-made on the locked
  row (still delivered, not disputed, window passed), so a second attempt, a standby worker or
  a race with the owner's confirm or dispute changes nothing more.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from core.config import settings
from core.consuming import consume
from core.db import Connection, DatabaseUnavailable
from kilat import app, booking_events
from models import events as ev
from models.events import CloudEvent, require_uuid
from services import booking as bookings
from streams.partitions import (
    actively_owned,
    changelog_written,
    current_partition,
    tables_settled,
)
from tables.confirmations import Waiting, keep_waiting, stop_waiting, waiting_entries

log = logging.getLogger(__name__)
CONSUMER = "booking-confirm-window"
# Entries whose confirmation was just attempted: not retried before this many seconds (the
# table entry goes away only when the agent sees the resulting `booking.completed`).
RETRY_AFTER_S = 5.0
_attempted: dict[str, float] = {}


def _epoch(value: object) -> float:
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
        except ValueError:
            pass
    return time.time()


async def on_delivered(conn: Connection, event: CloudEvent) -> None:
    booking_id = require_uuid(event.data, "booking_id")
    keep_waiting(Waiting(booking_id=booking_id, owner_id=str(event.data.get("owner_id") or ""),
                         delivered_at=_epoch(event.data.get("delivered_at")),
                         partition=current_partition()))
    await changelog_written()


async def on_settled(conn: Connection, event: CloudEvent) -> None:
    """Completed, cancelled or disputed: nothing left for the timer to do."""
    booking_id = require_uuid(event.data, "booking_id")
    stop_waiting(booking_id)
    _attempted.pop(booking_id, None)
    await changelog_written()


@app.agent(booking_events, name="kilat.booking-confirm-window", concurrency=1)
async def booking_confirm_window(stream) -> None:
    await consume(stream, CONSUMER, {
        "booking.delivery_confirmed": on_delivered,
        "booking.completed": on_settled,
        "booking.cancelled": on_settled,
        "booking.disputed": on_settled,
    })


def _window_s() -> float:
    return settings().auto_confirm_hours * 3600


def _tick_s() -> float:
    """A quarter of the window, between 0.25 s (tests use windows of seconds) and 60 s."""
    return max(0.25, min(_window_s() / 4, 60.0))


@app.timer(_tick_s(), name="kilat.booking-auto-confirm")
async def auto_confirm_due() -> None:
    """Confirm the deliveries whose owners let the window pass."""
    if not tables_settled():
        return  # the table is being rebuilt or handed over: its content is not settled yet
    window_h = settings().auto_confirm_hours
    now = time.time()
    due = [e for e in waiting_entries() if e["delivered_at"] + window_h * 3600 <= now
           and now - _attempted.get(e["booking_id"], 0.0) >= RETRY_AFTER_S]
    if not due:
        return
    mine = actively_owned(ev.BOOKING_EVENTS, {e["partition"] for e in due})
    for entry in due:
        if entry["partition"] not in mine:
            continue
        _attempted[entry["booking_id"]] = now
        try:
            await bookings.auto_confirm(entry["booking_id"])
        except DatabaseUnavailable as exc:
            log.warning("auto-confirm: database unavailable (%s); retrying later", exc)
            return
        except Exception:  # a bug on one booking must not stop the timer for the others
            log.exception("auto-confirm of booking %s failed", entry["booking_id"])
