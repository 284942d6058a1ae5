"""Payment agents: the release and refund sagas on booking events, and the cash-out rail.

`booking.events` → `payment-bookings`:
* `booking.completed` (the owner confirmed, the platform confirmed after the window, or an
  admin resolved a dispute with `release`): `services.payment.release_escrow`. The runner's
  `booking.delivery_confirmed` moves no money: the escrow waits for the owner (DESIGN 12).
* `booking.cancelled` (including an admin's `refund` resolution of a dispute):
  `services.payment.refund_cancelled`.
Each event is handled once (core.consuming), in the same transaction as the use case's effects;
a provider failure is announced with `payment.failed` and left to the saga reconciler
(streams/sagas.py), which retries the same step with the same idempotency keys.
"""

from __future__ import annotations

import logging

from core.config import settings
from core.consuming import consume
from core.db import Connection, DatabaseUnavailable, db
from domain.booking import NIL_UUID
from kilat import app, booking_events
from models.events import CloudEvent, require, require_uuid
from services import payment as payments
from stores.payment import advance_cash_outs

log = logging.getLogger(__name__)


def _log_nothing(event: CloudEvent, booking_id: str, outcome: payments.StepOutcome) -> None:
    if outcome.outcome == "nothing":
        log.info("%s for booking %s: no held payment, nothing to do", event.type, booking_id)


async def on_booking_completed(conn: Connection, event: CloudEvent) -> None:
    require(event.data, "booking_id", "runner_id")
    runner_id = require_uuid(event.data, "runner_id")
    booking_id = require_uuid(event.data, "booking_id")
    if runner_id == NIL_UUID:  # completed without a runner: there is nobody to pay
        log.warning("booking %s completed without a runner: escrow left held", booking_id)
        return
    _log_nothing(event, booking_id,
                 await payments.release_escrow(booking_id, runner_id, conn=conn))


async def on_booking_cancelled(conn: Connection, event: CloudEvent) -> None:
    booking_id = require_uuid(event.data, "booking_id")
    _log_nothing(event, booking_id, await payments.refund_cancelled(
        booking_id, event.data.get("reason") or "", conn=conn))


@app.agent(booking_events, name="kilat.payment-bookings", concurrency=1)
async def payment_on_bookings(stream) -> None:
    await consume(stream, "payment-bookings", {
        "booking.completed": on_booking_completed,
        "booking.cancelled": on_booking_cancelled,
    })


def _rail_tick_s() -> float:
    return max(0.05, min(settings().cash_out_rail_delay_s / 4, 1.0))


@app.timer(_rail_tick_s(), name="kilat.payment-cash-out-rail")
async def cash_out_rail() -> None:
    """Advance cash-outs on the simulated rail. State lives in PostgreSQL, so requests made
    before a restart complete after it."""
    try:
        async with db.transaction() as conn:
            await advance_cash_outs(conn, settings().cash_out_rail_delay_s)
    except DatabaseUnavailable as exc:
        log.warning("cash-out rail: database unavailable (%s)", exc)
    except Exception:  # a bug must not stop the timer
        log.exception("cash-out rail tick failed")
