"""Payment use cases: the escrow sagas, admin refunds, promos, subscriptions and cash-outs.

Escrow sagas (docs/payment.md):
* create_escrow, `initiate_payment`: save_payment (pending, promo use recorded,
  `payment.escrow_created`) → create_payment_intent (provider, manual capture, key
  `hold-<payment id>`) → hold_escrow (+ `payment.escrow_held`). A failing step is compensated
  in reverse (void the intent, mark the payment failed, give the promo use back,
  `payment.failed`) and reported as ProviderUnavailable.
* release_escrow (`booking.completed`): capture (key `capture-<payment id>`) → released →
  `payment.escrow_released`.
* refund_escrow (`booking.cancelled`, the admin's refund): void (key `refund-<payment id>`) →
  refunded → `payment.escrow_refunded`.
Release and refund lock the payment and act only on a `held` one, and the provider calls carry
idempotency keys, so the agent, the saga reconciler and a redelivery can all ask for the same
step: the money moves once.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from core.db import DatabaseUnavailable
from core.stripe import StripeError
from domain.payment import (
    FAILED,
    HELD,
    PAYABLE_BOOKING_STATUSES,
    PLANS,
    REFUNDED,
    RELEASED,
    SUBSCRIPTION_KIND,
    can_move,
    cash_out_allowed,
    check_charge,
    check_move,
    check_promo,
    new_promo_problem,
    normalise_code,
    price_payment,
    split_amount,
)
from domain.sagas import RELEASE, kind_of, owed_step
from models import events as ev
from services.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    PaymentDeclined,
    ProviderUnavailable,
    Unprocessable,
)
from services.ports import Conn, Intent, PaymentPorts, Row, payment_ports

log = logging.getLogger(__name__)

SOURCE = "service-payment"


def _ports(ports: PaymentPorts | None) -> PaymentPorts:
    return ports or payment_ports()


@asynccontextmanager
async def _transaction(p: PaymentPorts, conn: Conn | None) -> AsyncIterator[Conn]:
    """The caller's transaction when it passes one (an agent commits its event claim with the
    effects), else a transaction of our own."""
    if conn is not None:
        yield conn
        return
    async with p.db.transaction() as own:
        yield own


def saga_failure(saga: str, step: str, exc: BaseException) -> str:
    return f"saga '{saga}' failed at step '{step}': {exc}"


async def emit_payment(p: PaymentPorts, conn: Conn, type_: str, payment: Row,
                       data: dict[str, Any]) -> None:
    """A payment event keyed by booking id (so it follows the booking's own events)."""
    await p.emit(conn, ev.PAYMENT_EVENTS, str(payment["booking_id"]), SOURCE, type_,
                 {"payment_id": str(payment["id"]), "booking_id": str(payment["booking_id"]),
                  **data})


async def emit_failed(p: PaymentPorts, conn: Conn, payment: Row, reason: str) -> None:
    """`payment.failed`; `escrow_status` says where the money is now (`held`: a release or
    refund failed and may be retried; `failed`: the escrow never held)."""
    data: dict[str, Any] = {"reason": reason, "owner_id": str(payment["owner_id"]),
                            "escrow_status": payment["escrow_status"]}
    if payment.get("runner_id"):
        data["runner_id"] = str(payment["runner_id"])
    await emit_payment(p, conn, "payment.failed", payment, data)


def _saved(row: Row | None) -> Row:
    if row is None:  # the row is locked by the caller, so this means a bug, not a race
        raise RuntimeError("payment changed while locked")
    return row


# ================================================================== create_escrow


@dataclass(frozen=True)
class Payer:
    user_id: str
    email: str = ""


async def _apply_promo(p: PaymentPorts, conn: Conn, code: str | None, user_id: str,
                       total: int) -> tuple[Row | None, int]:
    if not code or not code.strip():
        return None, 0
    promo = await p.payments.get_promo_by_code(conn, normalise_code(code), for_update=True)
    used = bool(promo) and await p.payments.promo_used_by(conn, promo["id"], user_id)
    result = check_promo(promo, total, p.now(), already_used=used)
    if not result.valid:
        raise Invalid(result.message)
    return promo, result.discount_cents


async def save_payment(p: PaymentPorts, payer: Payer, booking_id: str, promo_code: str | None,
                       customer_email: str | None) -> tuple[Row, str | None]:
    """Step 1: the pending payment, priced from the booking, in one transaction. Returns it
    with the booking's runner (if already accepted) for the events."""
    async with p.db.transaction() as conn:
        # Locking the booking serialises concurrent initiates for it.
        booking = await p.bookings.get_booking(conn, booking_id, for_update=True)
        if booking is None:
            raise NotFound("Booking", booking_id)
        if str(booking["owner_id"]) != payer.user_id:
            raise Forbidden("booking does not belong to this user")
        if booking["status"] not in PAYABLE_BOOKING_STATUSES:
            raise Unprocessable(f"cannot pay for a booking in status '{booking['status']}'")
        if await p.payments.get_payment_by_booking(conn, booking_id) is not None:
            raise Conflict("payment already exists for this booking")
        total = int(booking["estimated_price_cents"])
        promo, promo_discount = await _apply_promo(p, conn, promo_code, payer.user_id, total)
        sub = await p.payments.active_subscription(conn, payer.user_id)
        price = price_payment(total, promo_discount, int(sub["discount_percent"]) if sub else 0)
        if price.amount_cents <= 0:
            raise Invalid("amount after discounts must be positive")
        fee, payout = split_amount(price.amount_cents, p.fee_percent())
        payment = await p.payments.insert_payment(
            conn, booking_id=booking_id, owner_id=payer.user_id,
            amount_cents=price.amount_cents, platform_fee_cents=fee, runner_payout_cents=payout,
            currency=booking["currency"] or "MYR", booking_amount_cents=total,
            discount_cents=price.discount_cents,
            customer_email=(customer_email or payer.email or "")[:255])
        if promo is not None:
            await p.payments.record_promo_use(conn, promo["id"], payer.user_id, booking_id,
                                              promo_discount)
        await emit_payment(p, conn, "payment.escrow_created", payment, {
            "owner_id": payer.user_id, "amount_cents": payment["amount_cents"],
            "currency": payment["currency"]})
        return payment, (str(booking["runner_id"]) if booking.get("runner_id") else None)


async def fail_payment(p: PaymentPorts, payment: Row, step: str, exc: BaseException,
                       intent: Intent | None) -> str:
    """Compensate in reverse: void the intent, mark the payment failed, give the promo back."""
    reason = saga_failure("create_escrow", step, exc)
    if intent is not None:
        try:
            await p.provider().cancel(intent.id, f"cancel-{payment['id']}")
        except StripeError:
            reason += " (voiding the payment intent also failed)"
    async with p.db.transaction() as conn:
        current = await p.payments.get_payment(conn, payment["id"], for_update=True)
        if current is not None and can_move(current["escrow_status"], FAILED):
            failed = await p.payments.update_payment(conn, current, escrow_status=FAILED,
                                                     refund_reason=reason)
            await p.payments.undo_promo_use(conn, current["booking_id"])
            await emit_failed(p, conn, failed or {**current, "escrow_status": FAILED}, reason)
    return reason


async def hold_escrow(p: PaymentPorts, payment: Row, intent: Intent, runner_id: str | None) -> Row:
    """Step 3: pending→held and `payment.escrow_held`, in one transaction."""
    async with p.db.transaction() as conn:
        current = await p.payments.get_payment(conn, payment["id"], for_update=True)
        if current is None:
            raise RuntimeError("payment disappeared")
        check_move(current["escrow_status"], HELD)
        held = _saved(await p.payments.update_payment(conn, current, escrow_status=HELD,
                                                      stripe_payment_id=intent.id,
                                                      escrow_held_at=p.now()))
        data: dict[str, Any] = {
            "stripe_payment_id": intent.id, "amount_cents": held["amount_cents"],
            "currency": held["currency"], "owner_id": str(held["owner_id"])}
        if runner_id:
            data["runner_id"] = runner_id
        await emit_payment(p, conn, "payment.escrow_held", held, data)
        return held


async def initiate_payment(payer: Payer, booking_id: str, *, promo_code: str | None = None,
                           customer_email: str | None = None,
                           ports: PaymentPorts | None = None) -> Row:
    """The create_escrow saga: the owner's money held for the booking (the payment row)."""
    p = _ports(ports)
    payment, runner_id = await save_payment(p, payer, booking_id, promo_code, customer_email)
    intent: Intent | None = None
    try:
        intent = await p.provider().create_intent(payment["amount_cents"], payment["currency"],
                                                  str(payment["booking_id"]),
                                                  f"hold-{payment['id']}")
        if intent.status != "requires_capture":
            raise StripeError(f"payment intent {intent.id} is '{intent.status}', "
                                "expected 'requires_capture'")
    except StripeError as exc:
        raise ProviderUnavailable(
            await fail_payment(p, payment, "create_payment_intent", exc, intent)) from None
    try:
        return await hold_escrow(p, payment, intent, runner_id)
    except DatabaseUnavailable:
        # The row cannot be marked failed now; at least release the customer's money.
        try:
            await p.provider().cancel(intent.id, f"cancel-{payment['id']}")
        except StripeError:
            log.warning("voiding intent %s after a database failure failed", intent.id)
        raise
    except Exception as exc:  # InvalidTransition, a vanished row: compensate
        raise ProviderUnavailable(
            await fail_payment(p, payment, "hold_escrow", exc, intent)) from None


# ================================================================== release and refund


@dataclass(frozen=True)
class StepOutcome:
    """What a release or refund did: `done` (the money moved now), `nothing` (no held payment:
    absent, already settled, or locked by someone finishing it), or `failed` (the provider
    refused or could not be reached; the money stays held)."""

    outcome: str
    payment: Row | None = None
    reason: str = ""


async def _held_payment(p: PaymentPorts, conn: Conn, booking_id: str,
                        skip_locked: bool) -> Row | None:
    payment = await p.payments.get_payment_by_booking(conn, booking_id, for_update=True,
                                                      skip_locked=skip_locked)
    if payment is None or payment["escrow_status"] != HELD:
        return None
    return payment


async def _capture_and_release(p: PaymentPorts, conn: Conn, payment: Row, runner_id: str) -> Row:
    """Capture → ReleaseToRunner → `payment.escrow_released`. `payment` must be locked."""
    check_move(payment["escrow_status"], RELEASED)
    intent = await p.provider().capture(payment["stripe_payment_id"], f"capture-{payment['id']}")
    if intent.status != "succeeded":
        raise StripeError(f"payment intent {intent.id} is '{intent.status}' after capture")
    released = _saved(await p.payments.update_payment(conn, payment, escrow_status=RELEASED,
                                                      runner_id=runner_id,
                                                      escrow_released_at=p.now()))
    await emit_payment(p, conn, "payment.escrow_released", released, {
        # The owner's "Payment released" notification names what they paid.
        "amount_cents": released["amount_cents"],
        "runner_id": runner_id, "runner_payout_cents": released["runner_payout_cents"],
        "platform_fee_cents": released["platform_fee_cents"], "currency": released["currency"],
        "owner_id": str(released["owner_id"]),
    })
    return released


async def _void_and_refund(p: PaymentPorts, conn: Conn, payment: Row, reason: str) -> Row:
    """Void the intent → Refund(reason) → `payment.escrow_refunded`. `payment` must be locked."""
    check_move(payment["escrow_status"], REFUNDED)
    intent = await p.provider().cancel(payment["stripe_payment_id"], f"refund-{payment['id']}")
    if intent.status != "canceled":
        raise StripeError(f"payment intent {intent.id} is '{intent.status}' after cancel")
    refunded = _saved(await p.payments.update_payment(conn, payment, escrow_status=REFUNDED,
                                                      refunded_at=p.now(),
                                                      refund_reason=reason))
    data: dict[str, Any] = {
        "owner_id": str(refunded["owner_id"]), "amount_cents": refunded["amount_cents"],
        "currency": refunded["currency"], "refund_reason": reason,
    }
    if refunded.get("runner_id"):
        data["runner_id"] = str(refunded["runner_id"])
    await emit_payment(p, conn, "payment.escrow_refunded", refunded, data)
    return refunded


async def _settle(p: PaymentPorts, booking_id: str, conn: Conn | None, saga: str, step: str,
                  act: Callable[[Conn, Row], Awaitable[Row]], announce_failure: bool,
                  skip_locked: bool) -> StepOutcome:
    """Run a release or refund on the booking's payment if it is held (locked meanwhile)."""
    async with _transaction(p, conn) as tx:
        payment = await _held_payment(p, tx, booking_id, skip_locked)
        if payment is None:
            return StepOutcome("nothing")
        try:
            return StepOutcome("done", await act(tx, payment))
        except StripeError as exc:
            reason = saga_failure(saga, step, exc)
            if announce_failure:
                await emit_failed(p, tx, payment, reason)
            return StepOutcome("failed", payment, reason)


async def release_escrow(booking_id: str, runner_id: str, *, conn: Conn | None = None,
                         announce_failure: bool = True, skip_locked: bool = False,
                         ports: PaymentPorts | None = None) -> StepOutcome:
    """Pay the runner for a completed booking, if its escrow still holds the money.

    A provider failure leaves the money held; with `announce_failure` it is announced with
    `payment.failed` (the agent; the reconciler retries quietly instead). `skip_locked`: a
    payment another transaction is working on counts as `nothing` (the reconciler never waits
    behind a stalled worker)."""
    p = _ports(ports)
    return await _settle(p, booking_id, conn, "release_escrow", "capture",
                         lambda tx, payment: _capture_and_release(p, tx, payment, runner_id),
                         announce_failure, skip_locked)


async def refund_cancelled(booking_id: str, reason: str, *, conn: Conn | None = None,
                           announce_failure: bool = True, skip_locked: bool = False,
                           ports: PaymentPorts | None = None) -> StepOutcome:
    """Give the owner's money back for a cancelled booking, if its escrow still holds it
    (`booking cancelled: <reason>`). Failures as for `release_escrow`."""
    p = _ports(ports)
    return await _settle(p, booking_id, conn, "refund_escrow", "cancel_intent",
                         lambda tx, payment: _void_and_refund(p, tx, payment,
                                                              f"booking cancelled: {reason}"),
                         announce_failure, skip_locked)


async def refund_payment(payment_id: str, reason: str, *,
                         ports: PaymentPorts | None = None) -> Row:
    """An admin's refund of a held payment. Not held → InvalidTransition; the provider
    failing → ProviderUnavailable, and nothing changes."""
    p = _ports(ports)
    async with p.db.transaction() as conn:
        payment = await p.payments.get_payment(conn, payment_id, for_update=True)
        if payment is None:
            raise NotFound("Payment", payment_id)
        if not reason.strip():
            raise Invalid("reason is required", None)
        try:
            return await _void_and_refund(p, conn, payment, reason.strip())
        except StripeError as exc:
            raise ProviderUnavailable(
                saga_failure("refund_escrow", "cancel_intent", exc)) from None


# ================================================================== saga reconciliation


@dataclass(frozen=True)
class SagaReport:
    """What driving one saga found and did: the owed `step` (None: nothing owed, the saga is
    settled), how it looked (`kind`, domain.sagas), and the step's outcome."""

    booking_id: str
    step: str | None
    kind: str | None = None
    outcome: str = "settled"
    reason: str = ""


async def escrow_holds(booking_id: str, *, conn: Conn | None = None,
                       ports: PaymentPorts | None = None) -> bool:
    """Whether the booking's escrow holds the owner's money right now."""
    p = _ports(ports)
    async with _transaction(p, conn) as tx:
        payment = await p.payments.get_payment_by_booking(tx, booking_id)
    return payment is not None and payment["escrow_status"] == HELD


async def _intent_status(p: PaymentPorts, payment: Row) -> str | None:
    """The provider's view of the payment's intent, or None when it cannot be had now (only
    for reporting: the step itself is safe either way thanks to its idempotency key)."""
    try:
        return (await p.provider().retrieve(payment["stripe_payment_id"])).status
    except StripeError:
        return None


async def drive_saga(booking_id: str, *, ports: PaymentPorts | None = None) -> SagaReport:
    """Finish the money step a booking's records say is still owed: release the escrow of a
    completed booking, refund that of a cancelled one, with the same idempotency keys as the
    agent (so a capture or void that reached the provider before a crash is not repeated).
    Quiet on provider failures (the caller retries later) and never waits behind a worker that
    holds the payment (its transaction ends, or is cut off by the server, first)."""
    p = _ports(ports)
    async with p.db.transaction() as conn:
        booking = await p.bookings.get_booking(conn, booking_id)
        payment = await p.payments.get_payment_by_booking(conn, booking_id)
    step = owed_step(booking["status"] if booking else None,
                     booking.get("runner_id") if booking else None,
                     payment["escrow_status"] if payment else None)
    if step is None or booking is None or payment is None:
        return SagaReport(booking_id, None)
    kind = kind_of(step, await _intent_status(p, payment))
    if step == RELEASE:
        done = await release_escrow(booking_id, str(booking["runner_id"]),
                                    announce_failure=False, skip_locked=True, ports=p)
    else:
        done = await refund_cancelled(booking_id, booking.get("cancel_note") or "",
                                      announce_failure=False, skip_locked=True, ports=p)
    return SagaReport(booking_id, step, kind, done.outcome, done.reason)


async def owed_sagas(*, ports: PaymentPorts | None = None) -> list[dict[str, Any]]:
    """Every booking whose records say a release or refund is owed now (the operator's view,
    straight from the database: it needs no worker)."""
    p = _ports(ports)
    owed: list[dict[str, Any]] = []
    async with p.db.transaction() as conn:
        for payment in await p.payments.held_booking_payments(conn):
            booking = await p.bookings.get_booking(conn, str(payment["booking_id"]))
            if booking is None:
                continue
            step = owed_step(booking["status"], booking.get("runner_id"), HELD)
            if step is not None:
                owed.append({"booking_id": str(booking["id"]), "payment_id": str(payment["id"]),
                             "step": step, "booking_status": booking["status"],
                             "since": booking.get("updated_at")})
    return owed


# ================================================================== promos


async def create_promo(created_by: str, *, code: str, discount_type: str, discount_value: int,
                       min_amount_cents: int, max_discount_cents: int, max_uses: int,
                       valid_from: Any, valid_until: Any,
                       ports: PaymentPorts | None = None) -> Row:
    p = _ports(ports)
    code = normalise_code(code)
    if not code:
        raise Invalid("promo code is required")
    problem = new_promo_problem(discount_type, discount_value, valid_from, valid_until)
    if problem:
        raise Invalid(problem)
    async with p.db.transaction() as conn:
        row = await p.payments.insert_promo(
            conn, code=code, discount_type=discount_type, discount_value=discount_value,
            min_amount_cents=min_amount_cents, max_discount_cents=max_discount_cents,
            max_uses=max_uses, valid_from=valid_from, valid_until=valid_until,
            created_by=created_by)
    if row is None:
        raise Conflict(f"promo with code '{code}' already exists")
    return row


# ================================================================== subscriptions


def no_subscription() -> NotFound:
    return NotFound("subscription", detail="you have no active subscription")


async def _start_subscription(p: PaymentPorts, payer: Payer,
                              plan: dict[str, Any]) -> tuple[Row, Row | None]:
    """Step 1, one transaction: either reactivate a cancelled subscription of the same plan whose
    paid period is still running (no charge, same expiry), or record a `pending` subscription
    and its `pending` payment. Returns (subscription, payment to charge or None)."""
    now = p.now()
    async with p.db.transaction() as conn:
        await p.payments.lock_user_subscriptions(conn, payer.user_id)
        await p.payments.expire_subscriptions(conn, payer.user_id)
        current = await p.payments.active_subscription(conn, payer.user_id)
        if current is not None:
            raise Conflict(f"you already have an active {current['plan']} subscription")
        if await p.payments.pending_subscription(conn, payer.user_id) is not None:
            raise Conflict("a subscription payment is already in progress")
        paid = await p.payments.paid_cancelled_subscription(conn, payer.user_id, plan["plan"],
                                                            for_update=True)
        if paid is not None:
            row = await p.payments.set_subscription_status(conn, paid["id"], "active",
                                                           auto_renew=True)
            return row or paid, None
        sub = await p.payments.insert_subscription(
            conn, user_id=payer.user_id, plan=plan["plan"], price_cents=plan["price_cents"],
            discount_percent=plan["discount_percent"], started_at=now,
            expires_at=now + timedelta(days=plan["duration_days"]), status="pending")
        payment = await p.payments.insert_payment(
            conn, kind=SUBSCRIPTION_KIND, subscription_id=sub["id"], booking_id=None,
            owner_id=payer.user_id, amount_cents=plan["price_cents"],
            platform_fee_cents=plan["price_cents"], runner_payout_cents=0, currency="MYR",
            booking_amount_cents=plan["price_cents"], customer_email=(payer.email or "")[:255])
        return sub, payment


async def _settle_subscription(p: PaymentPorts, sub: Row, intent: Intent | None,
                               failure: str | None) -> Row:
    """Step 3, one transaction: charged → payment released + subscription active (its period
    starts now) + `payment.subscription_charged`; refused → payment failed + subscription
    failed (never active) + `payment.subscription_failed`."""
    async with p.db.transaction() as conn:
        current = await p.payments.subscription_payment(conn, sub["id"], for_update=True)
        if current is None:
            raise RuntimeError("subscription payment disappeared")
        check_charge(current["escrow_status"])
        event = {"payment_id": str(current["id"]), "subscription_id": str(sub["id"]),
                 "owner_id": str(sub["user_id"]), "plan": sub["plan"],
                 "amount_cents": current["amount_cents"], "currency": current["currency"]}
        if failure is not None:
            await p.payments.update_payment(conn, current, escrow_status=FAILED,
                                            refund_reason=failure)
            await p.payments.set_subscription_status(conn, sub["id"], "failed", auto_renew=False)
            await p.emit(conn, ev.PAYMENT_EVENTS, str(sub["user_id"]), SOURCE,
                         "payment.subscription_failed", {**event, "reason": failure})
            return sub
        assert intent is not None
        now = p.now()
        await p.payments.update_payment(conn, current, escrow_status=RELEASED,
                                        stripe_payment_id=intent.id, escrow_released_at=now)
        active = await p.payments.set_subscription_status(
            conn, sub["id"], "active", started_at=now,
            expires_at=now + timedelta(days=PLANS[sub["plan"]]["duration_days"]))
        await p.emit(conn, ev.PAYMENT_EVENTS, str(sub["user_id"]), SOURCE,
                     "payment.subscription_charged", {**event, "stripe_payment_id": intent.id})
        return active or sub


async def subscribe(payer: Payer, plan_name: str, *, ports: PaymentPorts | None = None) -> Row:
    """Subscribe: the plan's price is charged before it is active. A refused charge leaves it
    inactive (PaymentDeclined; ProviderUnavailable when the provider could not be reached);
    re-subscribing to a plan cancelled within its paid period reactivates it until its
    original expiry without a second charge."""
    p = _ports(ports)
    plan = PLANS.get(plan_name.strip().lower())
    if plan is None:
        raise Invalid(f"invalid plan: {plan_name}")
    sub, payment = await _start_subscription(p, payer, plan)
    if payment is None:
        return sub
    intent: Intent | None = None
    failure: str | None = None
    declined = False
    try:
        intent = await p.provider().charge(
            payment["amount_cents"], payment["currency"],
            {"subscription_id": str(sub["id"]), "user_id": payer.user_id},
            f"subscription-{payment['id']}")
        if intent.status != "succeeded":
            failure = f"payment intent {intent.id} is '{intent.status}', expected 'succeeded'"
    except StripeError as exc:
        failure, declined = str(exc), exc.declined
    row = await _settle_subscription(p, sub, intent, failure)
    if failure is not None:
        if declined:
            raise PaymentDeclined(f"the subscription was not activated: {failure}")
        raise ProviderUnavailable(f"the subscription was not activated: {failure}")
    return row


async def cancel_subscription(user_id: str, *, ports: PaymentPorts | None = None) -> Row:
    p = _ports(ports)
    async with p.db.transaction() as conn:
        await p.payments.lock_user_subscriptions(conn, user_id)
        row = await p.payments.active_subscription(conn, user_id, for_update=True)
        if row is None:
            raise no_subscription()
        cancelled = await p.payments.cancel_subscription(conn, row["id"])
    return cancelled or row


# ================================================================== payouts


async def add_destination(runner_id: str, bank_name: str, account_number: str,
                          account_holder: str, *, ports: PaymentPorts | None = None) -> Row:
    p = _ports(ports)
    number = account_number.replace(" ", "").replace("-", "")
    if not number.isdigit() or not 6 <= len(number) <= 20:
        raise Invalid("account_number must be 6 to 20 digits")
    if not bank_name.strip() or not account_holder.strip():
        raise Invalid("bank_name and account_holder are required")
    async with p.db.transaction() as conn:
        return await p.payments.insert_destination(
            conn, runner_id=runner_id, bank_name=bank_name.strip(), account_number=number,
            account_holder=account_holder.strip())


class NotYourDestination(Forbidden):
    """The contract answers this one without the envelope."""


async def request_cash_out(runner_id: str, amount_cents: int, destination_id: str, *,
                           ports: PaymentPorts | None = None) -> Row:
    """A cash-out of the runner's available balance (the rail completes it later)."""
    p = _ports(ports)
    async with p.db.transaction() as conn:
        if await p.payments.destination_of(conn, destination_id, runner_id) is None:
            raise NotYourDestination("destination does not belong to runner", None)
        await p.payments.lock_runner_balance(conn, runner_id)
        balance = await p.payments.available_balance(conn, runner_id)
        if not cash_out_allowed(amount_cents, balance):
            raise Invalid("amount exceeds available balance", None)
        return await p.payments.insert_cash_out(conn, runner_id=runner_id,
                                                amount_myr_cents=amount_cents,
                                                destination_id=destination_id)
