"""The money sagas' watch list, their reconciler, and the alert on their dead letters.

* `kilat.payment-sagas` (consumer `payment-sagas`) reads booking.events and payment.events: a
  booking that completes or is cancelled while its escrow holds money opens a saga (the release
  or the refund is owed, domain.sagas); the payment event that settles it closes it. The open
  sagas live in the global table `payment-sagas` (tables/sagas.py).
* The reconciler, a timer on every worker, looks every `SAGA_RECONCILE_INTERVAL_S` for sagas
  still open `SAGA_STEP_TIMEOUT_S` after the booking's outcome — completed but escrow held,
  cancelled but not refunded, captured at the provider but not released in Kilat — and drives
  each forward through the same use case as the agent (services.payment.drive_saga, same
  idempotency keys). It skips a payment another transaction holds, so it never waits behind a
  frozen worker; that worker's transaction is cut off by the database (core/db.py), and the
  next look finishes the saga.
* `kilat.saga-dead-letters` reads the dead-letter topic and raises the alert metric
  `kilat_saga_dead_letters_total` for every dead-lettered saga event.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter

from core.config import settings, topic_name
from core.consuming import consume
from core.db import Connection, DatabaseUnavailable
from domain import sagas as rules
from kilat import app, dead_letter
from models import events as ev
from models.events import CloudEvent, require_uuid
from services import payment as payments
from tables import sagas
from web.metrics import SAGA_DEAD_LETTERS, SAGAS_DRIVEN, SAGAS_IN_FLIGHT, SAGAS_OVERDUE

log = logging.getLogger(__name__)

CONSUMER = "payment-sagas"
# The consumers whose dead letters may leave money somewhere it should not stay.
SAGA_CONSUMERS = frozenset({"payment-bookings", CONSUMER})
KINDS = (rules.COMPLETED_BUT_HELD, rules.CAPTURED_NOT_RELEASED, rules.CANCELLED_NOT_REFUNDED)

# One stream over both topics, so a booking's outcome and its settlement are handled one at a
# time (both are keyed by booking id and co-partitioned).
saga_inputs = app.topic(
    topic_name(ev.BOOKING_EVENTS), topic_name(ev.PAYMENT_EVENTS),
    key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


async def watch_outcome(conn: Connection, event: CloudEvent) -> None:
    booking_id = require_uuid(event.data, "booking_id")
    step = rules.opened_by(event.type, event.data)
    if step is None or not await payments.escrow_holds(booking_id, conn=conn):
        return
    sagas.open_saga(booking_id, step, rules.event_time(event.time, time.time()))
    # The changelog write must be on the broker before the processed-event ledger commits.
    await app.producer.flush()


async def watch_settlement(conn: Connection, event: CloudEvent) -> None:
    booking_id = require_uuid(event.data, "booking_id")
    if rules.closed_by(event.type, event.data):
        sagas.close_saga(booking_id)
        await app.producer.flush()


@app.agent(saga_inputs, name="kilat.payment-sagas", concurrency=1)
async def watch_sagas(stream) -> None:
    await consume(stream, CONSUMER, {
        "booking.completed": watch_outcome,
        "booking.cancelled": watch_outcome,
        "payment.escrow_released": watch_settlement,
        "payment.escrow_refunded": watch_settlement,
        "payment.failed": watch_settlement,
    })


async def reconcile_once(now: float, bound_s: float) -> list[payments.SagaReport]:
    """One look over the open sagas: drive the overdue ones, refresh the gauges."""
    open_sagas = sagas.in_flight()
    SAGAS_IN_FLIGHT.set(len(open_sagas))
    reports: list[payments.SagaReport] = []
    for saga in open_sagas:
        if not rules.overdue(saga, now, bound_s):
            continue
        try:
            report = await payments.drive_saga(saga["booking_id"])
        except DatabaseUnavailable as exc:
            log.warning("saga of booking %s: database unavailable (%s); next look retries",
                        saga["booking_id"], exc)
            continue
        if report.step is None:
            continue  # settled in the records; the closing event is on its way
        reports.append(report)
        SAGAS_DRIVEN.labels(report.step, report.kind, report.outcome).inc()
        log.warning("saga of booking %s overdue (%s, %s owed): %s %s", report.booking_id,
                    report.kind, report.step, report.outcome, report.reason)
    seen = Counter(r.kind for r in reports)
    for kind in KINDS:
        SAGAS_OVERDUE.labels(kind).set(seen[kind])
    return reports


@app.timer(settings().saga_reconcile_interval_s, name="kilat.payment-saga-reconciler")
async def reconcile_sagas() -> None:
    try:
        await reconcile_once(time.time(), settings().saga_step_timeout_s)
    except Exception:  # a bug must not stop the timer
        log.exception("saga reconciler look failed")


@app.agent(dead_letter, name="kilat.saga-dead-letters", concurrency=1)
async def alert_on_saga_dead_letters(stream) -> None:
    async for raw in stream:
        try:
            record = json.loads(raw)
        except (ValueError, TypeError):
            continue
        found = rules.dead_letter_alert(record, SAGA_CONSUMERS) if isinstance(record, dict) else None
        if found is not None:
            SAGA_DEAD_LETTERS.labels(*found).inc()
            log.error("ALERT: saga event dead-lettered by %s (%s): %s", found[0], found[1],
                      record.get("reason"))
