"""HTTP views of the payment domain: escrow payments, promos, subscriptions, payouts.

Initiate runs the create-escrow saga synchronously (the response is already `held`):
save_payment (pending, promo use recorded, `payment.escrow_created`) → create_payment_intent
(Stripe, manual capture) → hold_escrow (+ `payment.escrow_held`). A failing step is compensated
(void the intent, mark the payment failed, give the promo use back, `payment.failed`) → 502.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from pydantic import Field
from sqlalchemy import func

from core.config import settings
from core.db import Connection, DatabaseUnavailable, Row, db
from core.outbox import emit
from core.security import Principal
from core.stripe import PaymentIntent, StripeError, stripe
from domain.payment import (
    FAILED,
    HELD,
    PAYABLE_BOOKING_STATUSES,
    PLANS,
    RELEASED,
    SUBSCRIPTION_KIND,
    InvalidTransition,
    can_move,
    cash_out_allowed,
    cash_out_eta_minutes,
    check_charge,
    check_move,
    check_promo,
    new_promo_problem,
    normalise_code,
    price_payment,
    split_amount,
)
from models import events as ev
from stores import payment as store
from stores.booking import get_booking, is_participant
from streams.payment import SOURCE as PAYMENT_SOURCE
from streams.payment import emit_failed, emit_payment, refund_escrow, saga_failure
from web.http import (
    ApiError,
    Body,
    already_exists,
    bad_request,
    conflict,
    created,
    forbidden,
    invalid_transition,
    json_response,
    not_found,
    ok,
    page_params,
    paginated,
    parse_body,
    parse_uuid,
    path_uuid,
    read_json,
    require_role,
    validation_error,
)

routes = web.RouteTableDef()

ANY_ROLE = ("owner", "runner", "admin", "shop")


def provider_unavailable(detail: str) -> ApiError:
    return ApiError(502, "payment provider unavailable", detail)


# ================================================================== payments

class InitiatePaymentRequest(Body):
    booking_id: uuid.UUID
    # Accepted for compatibility and ignored: the amount comes from the booking (DESIGN 8).
    amount_cents: Any = None
    currency: Any = None
    customer_email: str | None = None
    promo_code: str | None = None


async def _apply_promo(conn: Connection, code: str | None, user_id: str, total: int,
                       now: datetime) -> tuple[Row | None, int]:
    if not code or not code.strip():
        return None, 0
    promo = await store.get_promo_by_code(conn, normalise_code(code), for_update=True)
    used = bool(promo) and await store.promo_used_by(conn, promo["id"], user_id)
    result = check_promo(promo, total, now, already_used=used)
    if not result.valid:
        raise validation_error(result.message)
    return promo, result.discount_cents


async def save_payment(principal: Principal, body: InitiatePaymentRequest) -> tuple[Row, str | None]:
    """Saga step 1: the pending payment, priced from the booking, in one transaction.
    Returns it with the booking's runner (if already accepted) for the events."""
    booking_id = str(body.booking_id)
    now = datetime.now(UTC)
    async with db.transaction() as conn:
        # Locking the booking serialises concurrent initiates for it.
        booking = await get_booking(conn, booking_id, for_update=True)
        if booking is None:
            raise not_found("Booking", booking_id)
        if str(booking["owner_id"]) != principal.user_id:
            raise forbidden("booking does not belong to this user")
        if booking["status"] not in PAYABLE_BOOKING_STATUSES:
            raise ApiError(422, f"cannot pay for a booking in status '{booking['status']}'", "")
        if await store.get_payment_by_booking(conn, booking_id) is not None:
            raise conflict("payment already exists for this booking")
        total = int(booking["estimated_price_cents"])
        promo, promo_discount = await _apply_promo(conn, body.promo_code, principal.user_id,
                                                   total, now)
        sub = await store.active_subscription(conn, principal.user_id)
        price = price_payment(total, promo_discount, int(sub["discount_percent"]) if sub else 0)
        if price.amount_cents <= 0:
            raise validation_error("amount after discounts must be positive")
        fee, payout = split_amount(price.amount_cents, settings().platform_fee_percent)
        payment = await store.insert_payment(
            conn, booking_id=booking_id, owner_id=principal.user_id,
            amount_cents=price.amount_cents, platform_fee_cents=fee, runner_payout_cents=payout,
            currency=booking["currency"] or "MYR", booking_amount_cents=total,
            discount_cents=price.discount_cents,
            customer_email=(body.customer_email or principal.email or "")[:255])
        if promo is not None:
            await store.record_promo_use(conn, promo["id"], principal.user_id, booking_id,
                                         promo_discount)
        await emit_payment(conn, "payment.escrow_created", payment, {
            "owner_id": principal.user_id, "amount_cents": payment["amount_cents"],
            "currency": payment["currency"]})
        return payment, (str(booking["runner_id"]) if booking.get("runner_id") else None)


async def fail_payment(payment: Row, step: str, exc: BaseException,
                       intent: PaymentIntent | None) -> str:
    """Compensate in reverse: void the intent, mark the payment failed, give the promo back."""
    reason = saga_failure("create_escrow", step, exc)
    if intent is not None:
        try:
            await stripe().cancel(intent.id, f"cancel-{payment['id']}")
        except StripeError:
            reason += " (voiding the payment intent also failed)"
    async with db.transaction() as conn:
        current = await store.get_payment(conn, payment["id"], for_update=True)
        if current is not None and can_move(current["escrow_status"], FAILED):
            failed = await store.update_payment(conn, current, escrow_status=FAILED,
                                                refund_reason=reason)
            await store.undo_promo_use(conn, current["booking_id"])
            await emit_failed(conn, failed or current, reason)
    return reason


async def hold_escrow(payment: Row, intent: PaymentIntent, runner_id: str | None) -> Row:
    """Saga step 3: HoldEscrow pending→held and `payment.escrow_held`, in one transaction."""
    async with db.transaction() as conn:
        current = await store.get_payment(conn, payment["id"], for_update=True)
        if current is None:
            raise RuntimeError("payment disappeared")
        check_move(current["escrow_status"], HELD)
        held = await store.update_payment(conn, current, escrow_status=HELD,
                                          stripe_payment_id=intent.id,
                                          escrow_held_at=func.now())
        if held is None:
            raise RuntimeError("payment changed while locked")
        data: dict[str, Any] = {
            "stripe_payment_id": intent.id, "amount_cents": held["amount_cents"],
            "currency": held["currency"], "owner_id": str(held["owner_id"])}
        if runner_id:
            data["runner_id"] = runner_id
        await emit_payment(conn, "payment.escrow_held", held, data)
        return held


@routes.post("/api/v1/payments/initiate")
async def initiate_payment(request: web.Request) -> web.Response:
    principal = require_role(request, "owner")
    body = await parse_body(request, InitiatePaymentRequest)
    payment, runner_id = await save_payment(principal, body)
    intent: PaymentIntent | None = None
    try:
        intent = await stripe().create_intent(payment["amount_cents"], payment["currency"],
                                              str(payment["booking_id"]), f"hold-{payment['id']}")
        if intent.status != "requires_capture":
            raise StripeError(f"payment intent {intent.id} is '{intent.status}', "
                              "expected 'requires_capture'")
    except StripeError as exc:
        raise provider_unavailable(
            await fail_payment(payment, "create_payment_intent", exc, intent)) from None
    try:
        held = await hold_escrow(payment, intent, runner_id)
    except (InvalidTransition, RuntimeError) as exc:
        raise provider_unavailable(await fail_payment(payment, "hold_escrow", exc, intent)) from None
    except DatabaseUnavailable:
        # The row cannot be marked failed now; at least release the customer's money.
        with contextlib.suppress(StripeError):
            await stripe().cancel(intent.id, f"cancel-{payment['id']}")
        raise
    return created(store.payment_dto(held))


async def _visible_payment(conn: Connection, payment: Row | None, principal: Principal,
                           entity_id: str) -> Row:
    """Participants only (DESIGN 6): owner, runner (of the payment or booking), admins."""
    if payment is None:
        raise not_found("Payment", entity_id)
    if principal.role == "admin" or principal.user_id in (payment["owner_id"],
                                                          payment["runner_id"]):
        return payment
    booking = await get_booking(conn, payment["booking_id"])
    if booking is not None and is_participant(
            {k: str(v) if v is not None else None for k, v in booking.items()
             if k in ("owner_id", "runner_id")}, principal.user_id, principal.role):
        return payment
    raise forbidden("you are not a participant of this booking")


@routes.get("/api/v1/payments")
async def list_my_payments(request: web.Request) -> web.Response:
    """Owners: their payments; runners: their released payouts (earnings); admins: all.
    Everyone also sees the charges of their own subscriptions."""
    principal = require_role(request, *ANY_ROLE)
    page, limit = page_params(request)
    async with db.connect() as conn:
        if principal.role == "owner":
            rows, total = await store.list_payments(conn, page=page, limit=limit,
                                                    owner_id=principal.user_id)
        elif principal.role == "runner":
            rows, total = await store.list_payments(conn, page=page, limit=limit,
                                                    runner_id=principal.user_id,
                                                    status="released",
                                                    subscriber_id=principal.user_id)
        elif principal.role == "admin":
            rows, total = await store.list_payments(conn, page=page, limit=limit)
        else:  # shops: only their own subscription charges
            rows, total = await store.list_payments(conn, page=page, limit=limit,
                                                    subscriber_id=principal.user_id)
    return paginated([store.payment_dto(r) for r in rows], total, page, limit)


@routes.get("/api/v1/payments/booking/{booking_id}")
async def payment_by_booking(request: web.Request) -> web.Response:
    principal = require_role(request, *ANY_ROLE)
    booking_id = path_uuid(request, "booking_id", "invalid booking ID")
    async with db.connect() as conn:
        payment = await store.get_payment_by_booking(conn, booking_id)
        payment = await _visible_payment(conn, payment, principal, booking_id)
    return ok(store.payment_dto(payment))


@routes.get("/api/v1/payments/{payment_id}")
async def get_payment(request: web.Request) -> web.Response:
    principal = require_role(request, *ANY_ROLE)
    payment_id = path_uuid(request, "payment_id", "invalid payment ID")
    async with db.connect() as conn:
        payment = await store.get_payment(conn, payment_id)
        payment = await _visible_payment(conn, payment, principal, payment_id)
    return ok(store.payment_dto(payment))


class RefundRequest(Body):
    reason: str = Field(min_length=1)


@routes.post("/api/v1/payments/{payment_id}/refund")
async def refund_payment(request: web.Request) -> web.Response:
    require_role(request, "admin")
    payment_id = path_uuid(request, "payment_id", "invalid payment ID")
    body = await parse_body(request, RefundRequest)
    async with db.transaction() as conn:
        payment = await store.get_payment(conn, payment_id, for_update=True)
        if payment is None:
            raise not_found("Payment", payment_id)
        if not body.reason.strip():
            raise bad_request("reason is required")
        try:
            refunded = await refund_escrow(conn, payment, body.reason.strip())
        except InvalidTransition as exc:
            raise invalid_transition(exc.current, exc.target) from None
        except StripeError as exc:
            raise provider_unavailable(saga_failure("refund_escrow", "cancel_intent", exc)) from None
    return ok(store.payment_dto(refunded))


@routes.get("/api/v1/admin/payments")
async def admin_payments(request: web.Request) -> web.Response:
    require_role(request, "admin")
    page, limit = page_params(request, over_max=20)
    async with db.connect() as conn:
        rows, total = await store.list_payments(conn, page=page, limit=limit)
    return paginated([store.payment_dto(r) for r in rows], total, page, limit)


@routes.get("/api/v1/admin/stats/payments")
async def admin_payment_stats(request: web.Request) -> web.Response:
    require_role(request, "admin")
    async with db.connect() as conn:
        return ok(await store.payment_stats(conn))


# ================================================================== promos

# The promo columns are BIGINT: a larger number is a 400, not a database error.
MAX_BIGINT = 2**63 - 1


class CreatePromoRequest(Body):
    code: str = Field(min_length=1, max_length=50)
    discount_type: str = Field(min_length=1)
    discount_value: int = Field(gt=0, le=MAX_BIGINT)
    min_amount_cents: int = Field(0, ge=0, le=MAX_BIGINT)
    max_discount_cents: int = Field(0, ge=0, le=MAX_BIGINT)
    max_uses: int = Field(0, ge=0, le=MAX_BIGINT)
    valid_from: str = Field(min_length=1)
    valid_until: str = Field(min_length=1)


def _rfc3339(name: str, value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise validation_error(f"{name} must be an RFC3339 time, e.g. 2026-01-01T00:00:00Z")
    return parsed


@routes.post("/api/v1/promos")
async def create_promo(request: web.Request) -> web.Response:
    principal = require_role(request, "admin")
    body = await parse_body(request, CreatePromoRequest)
    code = normalise_code(body.code)
    if not code:
        raise validation_error("promo code is required")
    valid_from = _rfc3339("valid_from", body.valid_from)
    valid_until = _rfc3339("valid_until", body.valid_until)
    problem = new_promo_problem(body.discount_type, body.discount_value, valid_from, valid_until)
    if problem:
        raise validation_error(problem)
    async with db.transaction() as conn:
        row = await store.insert_promo(
            conn, code=code, discount_type=body.discount_type, discount_value=body.discount_value,
            min_amount_cents=body.min_amount_cents, max_discount_cents=body.max_discount_cents,
            max_uses=body.max_uses, valid_from=valid_from, valid_until=valid_until,
            created_by=principal.user_id)
    if row is None:
        raise already_exists("promo", "code", code)
    return created(store.promo_dto(row))


class ValidatePromoRequest(Body):
    code: str = Field(min_length=1)
    amount_cents: int = Field(gt=0)


@routes.post("/api/v1/promos/validate")
async def validate_promo(request: web.Request) -> web.Response:
    principal = require_role(request, *ANY_ROLE)
    body = await parse_body(request, ValidatePromoRequest)
    code = normalise_code(body.code)
    async with db.connect() as conn:
        promo = await store.get_promo_by_code(conn, code)
        used = bool(promo) and await store.promo_used_by(conn, promo["id"], principal.user_id)
    result = check_promo(promo, body.amount_cents, datetime.now(UTC), already_used=used)
    data: dict[str, Any] = {"valid": result.valid, "code": code,
                            "discount_cents": result.discount_cents}
    if result.message:
        data["message"] = result.message
    return ok(data)


@routes.get("/api/v1/promos/active")
async def active_promos(request: web.Request) -> web.Response:
    require_role(request, *ANY_ROLE)
    async with db.connect() as conn:
        rows = await store.live_promos(conn, datetime.now(UTC))
    return ok([store.promo_dto(r) for r in rows])


@routes.get("/api/v1/admin/promos")
async def admin_promos(request: web.Request) -> web.Response:
    require_role(request, "admin")
    async with db.connect() as conn:
        rows = await store.live_promos(conn, datetime.now(UTC))
    return ok([store.promo_dto(r) for r in rows])


# ================================================================== subscriptions

@routes.get("/api/v1/subscriptions/plans")
async def subscription_plans(request: web.Request) -> web.Response:
    return ok(list(PLANS.values()))


class SubscribeRequest(Body):
    plan: str = Field(min_length=1)


async def _lock_user_subscriptions(conn: Connection, user_id: str) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('subscription:' || %(u)s))",
                       {"u": user_id})


def _no_subscription() -> ApiError:
    return ApiError(404, "subscription not found", "you have no active subscription")


def payment_failed(detail: str) -> ApiError:
    return ApiError(402, "payment failed", detail)


async def _start_subscription(principal: Principal, plan: dict[str, Any]) -> tuple[Row, Row | None]:
    """Step 1, one transaction: either reactivate a cancelled subscription of the same plan whose
    paid period is still running (no charge, same expiry), or record a `pending` subscription
    and its `pending` payment. Returns (subscription, payment to charge or None)."""
    now = datetime.now(UTC)
    async with db.transaction() as conn:
        await _lock_user_subscriptions(conn, principal.user_id)
        await store.expire_subscriptions(conn, principal.user_id)
        current = await store.active_subscription(conn, principal.user_id)
        if current is not None:
            raise conflict(f"you already have an active {current['plan']} subscription")
        if await store.pending_subscription(conn, principal.user_id) is not None:
            raise conflict("a subscription payment is already in progress")
        paid = await store.paid_cancelled_subscription(conn, principal.user_id, plan["plan"],
                                                       for_update=True)
        if paid is not None:
            row = await store.set_subscription_status(conn, paid["id"], "active",
                                                      auto_renew=True)
            return row or paid, None
        sub = await store.insert_subscription(
            conn, user_id=principal.user_id, plan=plan["plan"], price_cents=plan["price_cents"],
            discount_percent=plan["discount_percent"], started_at=now,
            expires_at=now + timedelta(days=plan["duration_days"]), status="pending")
        payment = await store.insert_payment(
            conn, kind=SUBSCRIPTION_KIND, subscription_id=sub["id"], booking_id=None,
            owner_id=principal.user_id, amount_cents=plan["price_cents"],
            platform_fee_cents=plan["price_cents"], runner_payout_cents=0, currency="MYR",
            booking_amount_cents=plan["price_cents"],
            customer_email=(principal.email or "")[:255])
        return sub, payment


async def _settle_subscription(sub: Row, payment: Row, intent: PaymentIntent | None,
                               failure: str | None) -> Row:
    """Step 3, one transaction: charged → payment released + subscription active (its period
    starts now) + `payment.subscription_charged`; refused → payment failed + subscription
    failed (never active) + `payment.subscription_failed`."""
    async with db.transaction() as conn:
        current = await store.subscription_payment(conn, sub["id"], for_update=True)
        if current is None:
            raise RuntimeError("subscription payment disappeared")
        check_charge(current["escrow_status"])
        event = {"payment_id": str(current["id"]), "subscription_id": str(sub["id"]),
                 "owner_id": str(sub["user_id"]), "plan": sub["plan"],
                 "amount_cents": current["amount_cents"], "currency": current["currency"]}
        if failure is not None:
            await store.update_payment(conn, current, escrow_status=FAILED, refund_reason=failure)
            await store.set_subscription_status(conn, sub["id"], "failed", auto_renew=False)
            await emit(conn, ev.PAYMENT_EVENTS, str(sub["user_id"]), PAYMENT_SOURCE,
                       "payment.subscription_failed", {**event, "reason": failure})
            return sub
        assert intent is not None
        now = datetime.now(UTC)
        await store.update_payment(conn, current, escrow_status=RELEASED,
                                   stripe_payment_id=intent.id, escrow_released_at=func.now())
        active = await store.set_subscription_status(
            conn, sub["id"], "active", started_at=now,
            expires_at=now + timedelta(days=PLANS[sub["plan"]]["duration_days"]))
        await emit(conn, ev.PAYMENT_EVENTS, str(sub["user_id"]), PAYMENT_SOURCE,
                   "payment.subscription_charged", {**event, "stripe_payment_id": intent.id})
        return active or sub


@routes.post("/api/v1/subscriptions")
async def subscribe(request: web.Request) -> web.Response:
    """Subscribe: the plan's price is charged through the payment adapter before it is active.

    A refused charge leaves it inactive (402); re-subscribing to a plan cancelled within its
    paid period reactivates it until its original expiry without a second charge."""
    principal = require_role(request, *ANY_ROLE)
    body = await parse_body(request, SubscribeRequest)
    plan = PLANS.get(body.plan.strip().lower())
    if plan is None:
        raise validation_error(f"invalid plan: {body.plan}")
    sub, payment = await _start_subscription(principal, plan)
    if payment is None:
        return created(store.subscription_dto(sub))
    intent: PaymentIntent | None = None
    failure: str | None = None
    declined = False
    try:
        intent = await stripe().charge(
            payment["amount_cents"], payment["currency"],
            {"subscription_id": str(sub["id"]), "user_id": principal.user_id},
            f"subscription-{payment['id']}")
        if intent.status != "succeeded":
            failure = f"payment intent {intent.id} is '{intent.status}', expected 'succeeded'"
    except StripeError as exc:
        failure, declined = str(exc), exc.declined
    row = await _settle_subscription(sub, payment, intent, failure)
    if failure is not None:
        if declined:
            raise payment_failed(f"the subscription was not activated: {failure}")
        raise provider_unavailable(f"the subscription was not activated: {failure}")
    return created(store.subscription_dto(row))


@routes.get("/api/v1/subscriptions/me")
async def my_subscription(request: web.Request) -> web.Response:
    principal = require_role(request, *ANY_ROLE)
    async with db.connect() as conn:
        row = await store.active_subscription(conn, principal.user_id)
    if row is None:
        raise _no_subscription()
    return ok(store.subscription_dto(row))


@routes.post("/api/v1/subscriptions/me/cancel")
async def cancel_my_subscription(request: web.Request) -> web.Response:
    principal = require_role(request, *ANY_ROLE)
    async with db.transaction() as conn:
        await _lock_user_subscriptions(conn, principal.user_id)
        row = await store.active_subscription(conn, principal.user_id, for_update=True)
        if row is None:
            raise _no_subscription()
        cancelled = await store.cancel_subscription(conn, row["id"])
    return ok(store.subscription_dto(cancelled or row))


# ================================================================== payouts

class CreateDestinationRequest(Body):
    bank_name: str = Field(min_length=1, max_length=100)
    account_number: str = Field(min_length=1, max_length=34)
    account_holder: str = Field(min_length=1, max_length=255)


@routes.post("/api/v1/payouts/destinations")
async def create_destination(request: web.Request) -> web.Response:
    principal = require_role(request, "runner")
    body = await parse_body(request, CreateDestinationRequest)
    number = body.account_number.replace(" ", "").replace("-", "")
    if not number.isdigit() or not 6 <= len(number) <= 20:
        raise validation_error("account_number must be 6 to 20 digits")
    if not body.bank_name.strip() or not body.account_holder.strip():
        raise validation_error("bank_name and account_holder are required")
    async with db.transaction() as conn:
        row = await store.insert_destination(
            conn, runner_id=principal.user_id, bank_name=body.bank_name.strip(),
            account_number=number, account_holder=body.account_holder.strip())
    return created(store.destination_dto(row))


@routes.get("/api/v1/payouts/destinations")
async def list_destinations(request: web.Request) -> web.Response:
    principal = require_role(request, "runner")
    async with db.connect() as conn:
        rows = await store.runner_destinations(conn, principal.user_id)
    return ok([store.destination_dto(r) for r in rows])


@routes.post("/api/v1/payouts/cash-out")
async def cash_out(request: web.Request) -> web.Response:
    """202 `{"cashOutId","etaMinutes"}` (not enveloped); the rail completes it asynchronously."""
    principal = require_role(request, "runner")
    data = await read_json(request)
    if not isinstance(data, dict):
        raise bad_request("invalid request body")
    amount = data.get("amountMyrCents")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise bad_request("amountMyrCents must be greater than 0")
    destination = data.get("destinationId")
    if destination in (None, ""):
        raise bad_request("destinationId is required")
    destination_id = parse_uuid(destination if isinstance(destination, str) else "",
                                "destinationId must be a valid UUID")
    async with db.transaction() as conn:
        if await store.destination_of(conn, destination_id, principal.user_id) is None:
            raise ApiError(403, "destination does not belong to runner", enveloped=False)
        await store.lock_runner_balance(conn, principal.user_id)
        balance = await store.available_balance(conn, principal.user_id)
        if not cash_out_allowed(amount, balance):
            raise bad_request("amount exceeds available balance")
        row = await store.insert_cash_out(conn, runner_id=principal.user_id,
                                          amount_myr_cents=amount, destination_id=destination_id)
    return json_response({"cashOutId": row["id"],
                          "etaMinutes": cash_out_eta_minutes(settings().cash_out_rail_delay_s)},
                         202)

