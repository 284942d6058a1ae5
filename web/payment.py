"""HTTP views of the payment domain: escrow payments, promos, subscriptions, payouts.

Views parse the request and call the use cases of `services/payment.py` (their refusals are
mapped to the contract's answers by `web.http.domain_errors`); reads go straight to
`stores/payment.py`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import Field

from core.config import settings
from core.db import Connection, Row, db
from core.security import Principal
from domain.payment import PLANS, cash_out_eta_minutes, check_promo, normalise_code
from services import payment as payments
from services.payment import Payer
from stores import payment as store
from stores.booking import get_booking, is_participant
from web.http import (
    ApiError,
    Body,
    bad_request,
    created,
    forbidden,
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


# ================================================================== payments

class InitiatePaymentRequest(Body):
    booking_id: uuid.UUID
    # Accepted for compatibility and ignored: the amount comes from the booking (DESIGN 8).
    amount_cents: Any = None
    currency: Any = None
    customer_email: str | None = None
    promo_code: str | None = None


def _payer(principal: Principal) -> Payer:
    return Payer(principal.user_id, principal.email or "")


@routes.post("/api/v1/payments/initiate")
async def initiate_payment(request: web.Request) -> web.Response:
    principal = require_role(request, "owner")
    body = await parse_body(request, InitiatePaymentRequest)
    held = await payments.initiate_payment(_payer(principal), str(body.booking_id),
                                           promo_code=body.promo_code,
                                           customer_email=body.customer_email)
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
    return ok(store.payment_dto(await payments.refund_payment(payment_id, body.reason)))


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
    row = await payments.create_promo(
        principal.user_id, code=body.code, discount_type=body.discount_type,
        discount_value=body.discount_value, min_amount_cents=body.min_amount_cents,
        max_discount_cents=body.max_discount_cents, max_uses=body.max_uses,
        valid_from=_rfc3339("valid_from", body.valid_from),
        valid_until=_rfc3339("valid_until", body.valid_until))
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


@routes.post("/api/v1/subscriptions")
async def subscribe(request: web.Request) -> web.Response:
    """Subscribe: the plan's price is charged through the payment adapter before it is active.

    A refused charge leaves it inactive (402); re-subscribing to a plan cancelled within its
    paid period reactivates it until its original expiry without a second charge."""
    principal = require_role(request, *ANY_ROLE)
    body = await parse_body(request, SubscribeRequest)
    return created(store.subscription_dto(await payments.subscribe(_payer(principal), body.plan)))


@routes.get("/api/v1/subscriptions/me")
async def my_subscription(request: web.Request) -> web.Response:
    principal = require_role(request, *ANY_ROLE)
    async with db.connect() as conn:
        row = await store.active_subscription(conn, principal.user_id)
    if row is None:
        raise payments.no_subscription()
    return ok(store.subscription_dto(row))


@routes.post("/api/v1/subscriptions/me/cancel")
async def cancel_my_subscription(request: web.Request) -> web.Response:
    principal = require_role(request, *ANY_ROLE)
    return ok(store.subscription_dto(await payments.cancel_subscription(principal.user_id)))


# ================================================================== payouts

class CreateDestinationRequest(Body):
    bank_name: str = Field(min_length=1, max_length=100)
    account_number: str = Field(min_length=1, max_length=34)
    account_holder: str = Field(min_length=1, max_length=255)


@routes.post("/api/v1/payouts/destinations")
async def create_destination(request: web.Request) -> web.Response:
    principal = require_role(request, "runner")
    body = await parse_body(request, CreateDestinationRequest)
    row = await payments.add_destination(principal.user_id, body.bank_name,
                                         body.account_number, body.account_holder)
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
    try:
        row = await payments.request_cash_out(principal.user_id, amount, destination_id)
    except payments.NotYourDestination as exc:
        raise ApiError(403, exc.message, enveloped=False) from None
    return json_response({"cashOutId": row["id"],
                          "etaMinutes": cash_out_eta_minutes(settings().cash_out_rail_delay_s)},
                         202)

