"""Payment agents: the release and refund sagas on booking events, and the cash-out rail.

`booking.events` → `payment-bookings`:
* `booking.completed` (the owner confirmed, the platform confirmed after the window, or an
  admin resolved a dispute with `release`): if the booking's payment is held, capture the
  intent (idempotency key `capture-<payment id>`), ReleaseToRunner, emit
  `payment.escrow_released`. `booking.delivery_confirmed` (the runner's deliver) moves no
  money: the escrow waits for the owner (DESIGN 12).
* `booking.cancelled` (including an admin's `refund` resolution of a dispute): if held,
  void the intent (`refund-<payment id>`), Refund, emit `payment.escrow_refunded`. Anything
  not held is left alone.
Each event is handled once (core.consuming); the payment row is locked while the saga runs, and a
payment already released/refunded is not touched again, so a replay never calls Stripe twice.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import func

from core.config import settings
from core.consuming import consume
from core.db import Connection, DatabaseUnavailable, Row, db
from core.outbox import emit
from core.stripe import StripeError, stripe
from domain.booking import NIL_UUID
from domain.payment import HELD, REFUNDED, RELEASED, check_move
from kilat import app, booking_events
from models import events as ev
from models.events import CloudEvent, MalformedEvent, require
from stores.payment import advance_cash_outs, get_payment_by_booking, update_payment

log = logging.getLogger(__name__)
SOURCE = "service-payment"


def saga_failure(saga: str, step: str, exc: BaseException) -> str:
    return f"saga '{saga}' failed at step '{step}': {exc}"


async def emit_payment(conn: Connection, type_: str, payment: Row, data: dict[str, Any]) -> None:
    """A payment event keyed by booking id (so it follows the booking's own events)."""
    await emit(conn, ev.PAYMENT_EVENTS, str(payment["booking_id"]), SOURCE, type_,
               {"payment_id": str(payment["id"]), "booking_id": str(payment["booking_id"]),
                **data})


async def emit_failed(conn: Connection, payment: Row, reason: str) -> None:
    data: dict[str, Any] = {"reason": reason, "owner_id": str(payment["owner_id"])}
    if payment.get("runner_id"):
        data["runner_id"] = str(payment["runner_id"])
    await emit_payment(conn, "payment.failed", payment, data)


def _saved(row: Row | None) -> Row:
    if row is None:  # the row is locked by the caller, so this means a bug, not a race
        raise RuntimeError("payment changed while locked")
    return row


async def release_escrow(conn: Connection, payment: Row, runner_id: str) -> Row:
    """Capture → ReleaseToRunner → `payment.escrow_released`. `payment` must be locked."""
    check_move(payment["escrow_status"], RELEASED)
    intent = await stripe().capture(payment["stripe_payment_id"], f"capture-{payment['id']}")
    if intent.status != "succeeded":
        raise StripeError(f"payment intent {intent.id} is '{intent.status}' after capture")
    released = _saved(await update_payment(conn, payment, escrow_status=RELEASED,
                                           runner_id=runner_id, escrow_released_at=func.now()))
    await emit_payment(conn, "payment.escrow_released", released, {
        # The owner's "Payment released" notification names what they paid.
        "amount_cents": released["amount_cents"],
        "runner_id": runner_id, "runner_payout_cents": released["runner_payout_cents"],
        "platform_fee_cents": released["platform_fee_cents"], "currency": released["currency"],
        "owner_id": str(released["owner_id"]),
    })
    return released


async def refund_escrow(conn: Connection, payment: Row, reason: str) -> Row:
    """Void the intent → Refund(reason) → `payment.escrow_refunded`. `payment` must be locked."""
    check_move(payment["escrow_status"], REFUNDED)
    intent = await stripe().cancel(payment["stripe_payment_id"], f"refund-{payment['id']}")
    if intent.status != "canceled":
        raise StripeError(f"payment intent {intent.id} is '{intent.status}' after cancel")
    refunded = _saved(await update_payment(conn, payment, escrow_status=REFUNDED,
                                           refunded_at=func.now(), refund_reason=reason))
    data: dict[str, Any] = {
        "owner_id": str(refunded["owner_id"]), "amount_cents": refunded["amount_cents"],
        "currency": refunded["currency"], "refund_reason": reason,
    }
    if refunded.get("runner_id"):
        data["runner_id"] = str(refunded["runner_id"])
    await emit_payment(conn, "payment.escrow_refunded", refunded, data)
    return refunded


def _uuid(data: dict, key: str) -> str:
    try:
        return str(uuid.UUID(str(data[key])))
    except ValueError:
        raise MalformedEvent(f"{key} is not a UUID") from None


async def held_payment_for(conn: Connection, event: CloudEvent) -> Row | None:
    booking_id = _uuid(event.data, "booking_id")
    payment = await get_payment_by_booking(conn, booking_id, for_update=True)
    if payment is None or payment["escrow_status"] != HELD:
        log.info("%s for booking %s: payment is %s, nothing to do", event.type, booking_id,
                 payment["escrow_status"] if payment else "absent")
        return None
    return payment


async def on_booking_completed(conn: Connection, event: CloudEvent) -> None:
    require(event.data, "booking_id", "runner_id")
    runner_id = _uuid(event.data, "runner_id")
    if runner_id == NIL_UUID:  # completed without a runner: there is nobody to pay
        log.warning("booking %s completed without a runner: escrow left held",
                    event.data.get("booking_id"))
        return
    payment = await held_payment_for(conn, event)
    if payment is None:
        return
    try:
        await release_escrow(conn, payment, runner_id)
    except StripeError as exc:
        # The money stays held (nothing was captured); ops see payment.failed and can retry.
        await emit_failed(conn, payment, saga_failure("release_escrow", "capture", exc))


async def on_booking_cancelled(conn: Connection, event: CloudEvent) -> None:
    require(event.data, "booking_id")
    payment = await held_payment_for(conn, event)
    if payment is None:
        return
    reason = f"booking cancelled: {event.data.get('reason') or ''}"
    try:
        await refund_escrow(conn, payment, reason)
    except StripeError as exc:
        await emit_failed(conn, payment, saga_failure("refund_escrow", "cancel_intent", exc))


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
