"""Payment domain: escrow saga, promos, subscriptions, payouts — through the gateway, on real
Kafka and PostGIS, with Stripe played by a local fake spoken to over HTTP."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from core.security import issue_access_token
from core.stripe import Stripe, StripeError
from domain import payment as rules
from models.events import new_event
from tests.conftest import Client
from tests.fakes.stripe import FakeStripe
from tests.platform import Platform, free_port, wait_until

# ================================================================== pure rules


def test_fee_is_truncated_and_payout_is_the_rest() -> None:
    assert rules.split_amount(150000, 15) == (22500, 127500)
    assert rules.split_amount(1999, 15) == (299, 1700)
    assert rules.split_amount(16150, 15.0) == (2422, 13728)
    assert rules.platform_fee(100, 12.5) == 12


def test_escrow_state_machine() -> None:
    assert rules.can_move("pending", "held")
    assert rules.can_move("held", "released") and rules.can_move("held", "refunded")
    assert rules.can_move("pending", "failed") and rules.can_move("held", "failed")
    for current, target in [("pending", "released"), ("released", "refunded"),
                            ("refunded", "refunded"), ("failed", "held"), ("released", "failed")]:
        assert not rules.can_move(current, target)
    with pytest.raises(rules.InvalidTransition, match="cannot transition from 'released' to "
                                                     "'refunded'"):
        rules.check_move("released", "refunded")


def _promo(**kw):
    now = datetime.now(UTC)
    base = {"discount_type": "percentage", "discount_value": 10, "min_amount_cents": 0,
            "max_discount_cents": 0, "max_uses": 0, "current_uses": 0,
            "valid_from": now - timedelta(days=1), "valid_until": now + timedelta(days=1)}
    return {**base, **kw}


def test_promo_rules() -> None:
    now = datetime.now(UTC)
    assert rules.check_promo(_promo(), 1999, now, already_used=False) == rules.PromoCheck(True, 199)
    assert rules.check_promo(_promo(max_discount_cents=100), 1999, now,
                             already_used=False).discount_cents == 100
    assert rules.check_promo(_promo(discount_type="fixed", discount_value=5000), 1999, now,
                             already_used=False).discount_cents == 1999
    assert rules.check_promo(None, 1, now, already_used=False).message == "promo code not found"
    assert rules.check_promo(_promo(max_uses=2, current_uses=2), 1, now,
                             already_used=False).message == "promo code is expired or fully used"
    assert rules.check_promo(_promo(valid_until=now), 1, now,
                             already_used=False).message == "promo code is expired or fully used"
    assert rules.check_promo(_promo(), 1, now, already_used=True).message == \
        "you have already used this promo code"
    assert rules.check_promo(_promo(min_amount_cents=5000), 4999, now,
                             already_used=False).message == "minimum amount of 5000 cents required"
    assert rules.new_promo_problem("percentage", 101, now, now) == \
        "percentage discount must be between 1 and 100"
    assert rules.new_promo_problem("bogus", 1, now, now) == "invalid discount type: bogus"
    assert rules.new_promo_problem("fixed", 500, now, now - timedelta(seconds=1)) == \
        "valid_until must not be before valid_from"
    assert rules.new_promo_problem("fixed", 500, now, now) is None
    assert rules.normalise_code("  save10 ") == "SAVE10"


def test_discounts_plans_and_cash_out_rules() -> None:
    price = rules.price_payment(20000, 1000, 15)
    assert (price.subscription_discount_cents, price.amount_cents) == (2850, 16150)
    assert rules.price_payment(1999, 0, 0).amount_cents == 1999
    assert [p["discount_percent"] for p in rules.PLANS.values()] == [5, 15]
    assert rules.cash_out_eta_minutes(30) == 1 and rules.cash_out_eta_minutes(61) == 2
    assert rules.cash_out_allowed(100, 150) and not rules.cash_out_allowed(101, 150)


# ================================================================== platform with fake Stripe


@pytest.fixture(scope="module")
async def fake_stripe() -> AsyncIterator[FakeStripe]:
    fake = FakeStripe()
    await fake.start(free_port())
    yield fake
    await fake.stop()


@pytest.fixture(scope="module")
async def pay(infra, tmp_path_factory, fake_stripe: FakeStripe) -> AsyncIterator[Platform]:
    """A platform whose worker talks to the fake Stripe; a 1 s cash-out rail."""
    p = Platform(tmp_path_factory.mktemp("payment"), extra_env={
        "STRIPE_API_BASE": fake_stripe.base_url, "CASH_OUT_RAIL_DELAY_S": "1"})
    p.create_database()
    try:
        await p.start_worker_and_gateway()
        yield p
    finally:
        p.stop_all()
        p.drop_database()


@pytest.fixture
def user(pay: Platform, http):
    """A signed-in user of a role (a real access token; payment keeps no user rows)."""

    def make(role: str = "owner") -> Client:
        user_id = str(uuid.uuid4())
        c = Client(http, pay.base_url, issue_access_token(user_id, f"{role}-{user_id[:8]}@kilat.test",
                                                          role))
        c.user = {"id": user_id, "role": role}
        return c

    return make


def insert_booking(p: Platform, owner_id: str, *, status: str = "requested", price: int = 150000,
                   runner_id: str | None = None) -> str:
    number = "BK-" + "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(6))
    rows = p.sql(
        "INSERT INTO bookings (booking_number, owner_id, runner_id, status, pet_spec, "
        "crate_requirement, pickup_address, dropoff_address, pickup_location, "
        "estimated_price_cents, currency) VALUES (%s, %s, %s, %s, '{}', '{}', '{}', '{}', "
        "ST_GeogFromText('POINT(101.68 3.13)'), %s, 'MYR') RETURNING id",
        (number, owner_id, runner_id, status, price))
    return str(rows[0]["id"])


async def paid_booking(p: Platform, owner: Client, *, price: int = 150000,
                       runner_id: str | None = None) -> tuple[str, dict]:
    booking_id = insert_booking(p, owner.user["id"], price=price, runner_id=runner_id,
                                status="accepted" if runner_id else "requested")
    status, body = await owner.post("/api/v1/payments/initiate", {
        "booking_id": booking_id, "amount_cents": 1, "currency": "MYR",
        "customer_email": "owner@kilat.test"})
    assert status == 201, body
    return booking_id, body["data"]


def booking_event(type_: str, booking_id: str, **data) -> tuple[str, bytes]:
    event = new_event("service-booking", type_, {"booking_id": booking_id,
                                                 "booking_number": "BK-TEST01", **data})
    return event.id, event.to_json()


async def processed(p: Platform, event_id: str) -> None:
    async def done():
        return p.sql("SELECT 1 FROM processed_events WHERE consumer = 'payment-bookings' "
                      "AND event_id = %s", (event_id,))
    await wait_until(done, 30, what=f"payment-bookings handled {event_id}")


def outbox_events(p: Platform, type_: str, booking_id: str) -> list[dict]:
    return [r["value"] for r in p.sql(
        "SELECT value FROM outbox WHERE key = %s AND value->>'type' = %s ORDER BY id",
        (booking_id, type_))]


# ================================================================== Stripe adapter


async def test_stripe_adapter_mock_mode_is_deterministic() -> None:
    mock = Stripe(base="mock")
    intent = await mock.create_intent(1510, "MYR", str(uuid.uuid4()), "hold-abc")
    assert intent.status == "requires_capture" and intent.amount == 1510
    assert len(intent.id) == len("pi_mock_") + 8 and intent.id.startswith("pi_mock_")
    assert (await mock.create_intent(1510, "MYR", "b", "hold-abc")).id == intent.id
    assert (await mock.create_intent(1510, "MYR", "b", "hold-xyz")).id != intent.id
    assert (await mock.capture(intent.id, "capture-abc")).status == "succeeded"
    assert (await mock.cancel(intent.id, "refund-abc")).status == "canceled"


async def test_stripe_adapter_over_http_honours_idempotency(fake_stripe) -> None:
    client = Stripe(base=fake_stripe.base_url, secret=fake_stripe.secret)
    key = f"hold-{uuid.uuid4()}"
    try:
        first = await client.create_intent(2210, "MYR", "b-1", key)
        again = await client.create_intent(2210, "MYR", "b-1", key)
        assert first == again and first.status == "requires_capture"
        assert len(fake_stripe.calls("/v1/payment_intents", key=key)) == 2
        assert len([i for i in fake_stripe.intents.values()
                    if i["metadata"] == {"booking_id": "b-1"}]) == 1
        assert (await client.capture(first.id, f"c-{key}")).status == "succeeded"
        with pytest.raises(StripeError, match="HTTP 400"):
            await client.cancel(first.id, f"r-{key}")
        with pytest.raises(StripeError, match="HTTP 401"):
            await Stripe(base=fake_stripe.base_url, secret="sk_wrong").capture(first.id, "k")
    finally:
        await client.close()


# ================================================================== initiate and reads


async def test_initiate_holds_escrow_priced_from_the_booking(pay, fake_stripe, user) -> None:
    owner = user("owner")
    booking_id, payment = await paid_booking(pay, owner, price=150000)
    assert payment["escrow_status"] == "held"
    assert (payment["amount_cents"], payment["platform_fee_cents"],
            payment["runner_payout_cents"]) == (150000, 22500, 127500)
    assert payment["booking_id"] == booking_id and payment["owner_id"] == owner.user["id"]
    assert payment["stripe_payment_id"].startswith("pi_") and payment["version"] == 2
    assert payment["currency"] == "MYR" and payment["escrow_held_at"]
    assert set(payment) == {"id", "booking_id", "owner_id", "escrow_status", "amount_cents",
                            "platform_fee_cents", "runner_payout_cents", "currency",
                            "stripe_payment_id", "escrow_held_at", "version", "created_at",
                            "updated_at"}

    [create] = fake_stripe.calls("/v1/payment_intents", key=f"hold-{payment['id']}")
    assert create.headers["Authorization"] == "Bearer sk_test_kilat_local"
    assert create.form["amount"] == "150000" and create.form["capture_method"] == "manual"
    assert create.form["metadata[booking_id]"] == booking_id and create.form["currency"] == "myr"

    held = await pay.wait_event("payment.events", "payment.escrow_held", booking_id=booking_id)
    created = await pay.events_of("payment.events", "payment.escrow_created",
                                  booking_id=booking_id)
    assert created[0]["_offset"] < held[0]["_offset"]
    assert created[0]["data"]["amount_cents"] == 150000
    assert held[0]["_key"] == booking_id and held[0]["source"] == "service-payment"
    assert held[0]["data"]["stripe_payment_id"] == payment["stripe_payment_id"]
    assert held[0]["data"]["owner_id"] == owner.user["id"]

    status, body = await owner.post("/api/v1/payments/initiate", {"booking_id": booking_id})
    assert (status, body) == (409, {"success": False,
                                    "error": "payment already exists for this booking",
                                    "detail": ""})

    status, body = await owner.get(f"/api/v1/payments/{payment['id']}")
    assert status == 200 and body["data"] == payment
    status, body = await owner.get(f"/api/v1/payments/booking/{booking_id}")
    assert status == 200 and body["data"]["id"] == payment["id"]
    status, body = await owner.get("/api/v1/payments")
    assert status == 200 and [p["id"] for p in body["data"]] == [payment["id"]]
    assert body["pagination"] == {"total": 1, "page": 1, "limit": 20, "total_pages": 1}

    stranger = user("owner")
    status, body = await stranger.get(f"/api/v1/payments/{payment['id']}")
    assert status == 403 and body["success"] is False
    status, body = await stranger.post("/api/v1/payments/initiate", {"booking_id": booking_id})
    assert (status, body["error"]) == (403, "booking does not belong to this user")


async def test_concurrent_initiates_for_one_booking(pay, user) -> None:
    owner = user("owner")
    booking_id = insert_booking(pay, owner.user["id"], price=3000)
    results = await asyncio.gather(*[
        owner.post("/api/v1/payments/initiate", {"booking_id": booking_id}) for _ in range(3)])
    assert sorted(status for status, _ in results) == [201, 409, 409], results
    assert pay.sql("SELECT count(*) AS n FROM payments WHERE booking_id = %s",
                   (booking_id,)) == [{"n": 1}]


async def test_initiate_errors(pay, user) -> None:
    owner = user("owner")
    missing = str(uuid.uuid4())
    status, body = await owner.post("/api/v1/payments/initiate", {"booking_id": missing})
    assert (status, body) == (404, {"success": False, "error": "Booking not found",
                                    "detail": f"Booking with id '{missing}' was not found"})
    done = insert_booking(pay, owner.user["id"], status="completed")
    status, body = await owner.post("/api/v1/payments/initiate", {"booking_id": done})
    assert (status, body["error"]) == (422, "cannot pay for a booking in status 'completed'")
    status, body = await owner.post("/api/v1/payments/initiate", {"amount_cents": 100})
    assert status == 400 and "BookingId" in body["error"] and "required" in body["error"]
    status, body = await user("runner").post("/api/v1/payments/initiate", {"booking_id": done})
    assert (status, body) == (403, {"error": "insufficient permissions"})
    status, body = await owner.get(f"/api/v1/payments/{missing}")
    assert (status, body["error"], body["detail"]) == (
        404, "Payment not found", f"Payment with id '{missing}' was not found")
    status, body = await owner.get(f"/api/v1/payments/booking/{done}")
    assert status == 404 and body["detail"] == f"Payment with id '{done}' was not found"
    status, body = await owner.get("/api/v1/payments/not-a-uuid")
    assert (status, body) == (400, {"success": False, "error": "invalid payment ID"})


async def test_provider_decline_is_compensated(pay, fake_stripe, user) -> None:
    admin, owner = user("admin"), user("owner")
    code = "DECL" + secrets.token_hex(3).upper()
    now = datetime.now(UTC)
    status, body = await admin.post("/api/v1/promos", {
        "code": code, "discount_type": "fixed", "discount_value": 500,
        "valid_from": (now - timedelta(hours=1)).isoformat(),
        "valid_until": (now + timedelta(days=1)).isoformat()})
    assert status == 201, body
    booking_id = insert_booking(pay, owner.user["id"], price=5000)
    fake_stripe.decline_next = 1
    status, body = await owner.post("/api/v1/payments/initiate",
                                    {"booking_id": booking_id, "promo_code": code})
    reason = ("saga 'create_escrow' failed at step 'create_payment_intent': "
              "HTTP 402: Your card was declined.")
    assert (status, body) == (502, {"success": False, "error": "payment provider unavailable",
                                    "detail": reason})
    [row] = pay.sql("SELECT escrow_status, refund_reason FROM payments WHERE booking_id = %s",
                    (booking_id,))
    assert row == {"escrow_status": "failed", "refund_reason": reason}
    # The promo use is given back with the failed payment.
    assert pay.sql("SELECT current_uses FROM promos WHERE code = %s", (code,)) == [
        {"current_uses": 0}]
    assert pay.sql("SELECT count(*) AS n FROM promo_usages WHERE booking_id = %s",
                   (booking_id,)) == [{"n": 0}]
    [failed] = await pay.wait_event("payment.events", "payment.failed", booking_id=booking_id)
    assert failed["data"]["reason"] == reason and failed["_key"] == booking_id
    assert not await pay.events_of("payment.events", "payment.escrow_held", booking_id=booking_id)


# ================================================================== promos and subscriptions


async def test_promo_and_subscription_discounts(pay, user, http) -> None:
    admin, owner = user("admin"), user("owner")
    code = "SAVE" + secrets.token_hex(3).upper()
    now = datetime.now(UTC)
    promo_body = {"code": f" {code.lower()} ", "discount_type": "percentage", "discount_value": 10,
                  "max_discount_cents": 1000, "min_amount_cents": 10000, "max_uses": 5,
                  "valid_from": (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "valid_until": (now + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")}
    status, body = await admin.post("/api/v1/promos", promo_body)
    assert status == 201, body
    promo = body["data"]
    assert promo["code"] == code and promo["current_uses"] == 0
    assert set(promo) == set(("id code discount_type discount_value min_amount_cents "
                              "max_discount_cents max_uses current_uses valid_from valid_until "
                              "created_at").split())
    status, body = await admin.post("/api/v1/promos", promo_body)
    assert (status, body["error"]) == (409, f"promo with code '{code}' already exists")
    status, body = await admin.post("/api/v1/promos", {**promo_body, "discount_value": 150})
    assert (status, body["error"]) == (400, "percentage discount must be between 1 and 100")
    status, body = await owner.post("/api/v1/promos", promo_body)
    assert status == 403

    status, body = await owner.post("/api/v1/promos/validate",
                                    {"code": code.lower(), "amount_cents": 20000})
    assert (status, body["data"]) == (200, {"valid": True, "code": code, "discount_cents": 1000})
    status, body = await owner.post("/api/v1/promos/validate", {"code": code, "amount_cents": 9999})
    assert body["data"] == {"valid": False, "code": code, "discount_cents": 0,
                            "message": "minimum amount of 10000 cents required"}
    status, body = await owner.post("/api/v1/promos/validate", {"code": "NOPE", "amount_cents": 1})
    assert body["data"]["message"] == "promo code not found"
    for path in ("/api/v1/promos/active", "/api/v1/admin/promos"):
        status, body = await admin.get(path)
        assert status == 200 and code in [p["code"] for p in body["data"]]

    # Subscriptions: plans are public; one active subscription at a time.
    async with http.get(pay.base_url + "/api/v1/subscriptions/plans") as resp:
        plans = await resp.json()
        assert resp.status == 200 and [p["plan"] for p in plans["data"]] == ["basic", "premium"]
        assert plans["data"][1] == {"plan": "premium", "price_cents": 4990, "duration_days": 30,
                                    "discount_percent": 15, "description": "15% off every "
                                    "booking + priority runner matching, valid 30 days"}
    status, body = await owner.get("/api/v1/subscriptions/me")
    assert (status, body["error"]) == (404, "subscription not found")
    status, body = await owner.post("/api/v1/subscriptions", {"plan": "gold"})
    assert (status, body["error"]) == (400, "invalid plan: gold")
    status, body = await owner.post("/api/v1/subscriptions", {"plan": "premium"})
    assert status == 201, body
    sub = body["data"]
    assert (sub["plan"], sub["price_cents"], sub["status"], sub["auto_renew"]) == (
        "premium", 4990, "active", True)
    assert sub["user_id"] == owner.user["id"]
    status, body = await owner.post("/api/v1/subscriptions", {"plan": "basic"})
    assert (status, body["error"]) == (409, "you already have an active premium subscription")
    status, body = await owner.get("/api/v1/subscriptions/me")
    assert status == 200 and body["data"]["id"] == sub["id"]

    # 20000 − promo min(10 %, 1000) = 19000; − premium 15 % (2850) = 16150; fee 2422.
    booking_id = insert_booking(pay, owner.user["id"], price=20000)
    status, body = await owner.post("/api/v1/payments/initiate", {
        "booking_id": booking_id, "amount_cents": 99999, "promo_code": code.lower()})
    assert status == 201, body
    assert (body["data"]["amount_cents"], body["data"]["platform_fee_cents"],
            body["data"]["runner_payout_cents"]) == (16150, 2422, 13728)
    assert pay.sql("SELECT user_id::text, booking_id::text, discount_cents FROM promo_usages "
                   "WHERE promo_id = %s", (promo["id"],)) == [
        {"user_id": owner.user["id"], "booking_id": booking_id, "discount_cents": 1000}]
    assert pay.sql("SELECT current_uses FROM promos WHERE id = %s", (promo["id"],)) == [
        {"current_uses": 1}]
    status, body = await owner.post("/api/v1/promos/validate", {"code": code, "amount_cents": 20000})
    assert body["data"]["message"] == "you have already used this promo code"
    second = insert_booking(pay, owner.user["id"], price=20000)
    status, body = await owner.post("/api/v1/payments/initiate",
                                    {"booking_id": second, "promo_code": code})
    assert (status, body["error"]) == (400, "you have already used this promo code")

    status, body = await owner.post("/api/v1/subscriptions/me/cancel")
    assert status == 200 and (body["data"]["status"], body["data"]["auto_renew"]) == (
        "cancelled", False)
    status, body = await owner.post("/api/v1/subscriptions/me/cancel")
    assert status == 404
    status, body = await owner.post("/api/v1/subscriptions", {"plan": "basic"})
    assert status == 201 and body["data"]["plan"] == "basic"


# ================================================================== sagas on booking events


async def test_completed_booking_releases_escrow_exactly_once(pay, fake_stripe, user) -> None:
    owner, runner = user("owner"), user("runner")
    runner_id = runner.user["id"]
    booking_id, payment = await paid_booking(pay, owner, runner_id=runner_id)
    # The runner's deliver moves no money (DESIGN 12): the escrow waits for the owner. The
    # barrier (a cancellation of an unpaid booking, on the same partition) shows the agent
    # has read past the delivery.
    unpaid = insert_booking(pay, owner.user["id"])
    _, delivered = booking_event("booking.delivery_confirmed", booking_id, runner_id=runner_id,
                                 owner_id=owner.user["id"], delivered_at="2026-11-25T10:00:00Z")
    barrier_id, barrier = booking_event("booking.cancelled", unpaid,
                                        cancelled_by=owner.user["id"], reason="barrier")
    await pay.produce_many("booking.events", [(booking_id, delivered), (booking_id, barrier)])
    await processed(pay, barrier_id)
    assert pay.sql("SELECT escrow_status FROM payments WHERE id = %s", (payment["id"],)) == [
        {"escrow_status": "held"}]
    assert not fake_stripe.calls(f"/v1/payment_intents/{payment['stripe_payment_id']}/capture")

    first_id, first = booking_event("booking.completed", booking_id, runner_id=runner_id,
                                    owner_id=owner.user["id"], final_price_cents=150000,
                                    currency="MYR", confirmed_by="owner", auto_confirmed=False)
    again_id, again = booking_event("booking.completed", booking_id, runner_id=runner_id,
                                    owner_id=owner.user["id"], final_price_cents=150000,
                                    currency="MYR", confirmed_by="platform", auto_confirmed=True)
    # The same event twice (redelivery), then a new event for the already released payment.
    await pay.produce_many("booking.events", [(booking_id, first), (booking_id, first),
                                              (booking_id, again)])
    [released] = await pay.wait_event("payment.events", "payment.escrow_released",
                                      booking_id=booking_id)
    await processed(pay, again_id)
    assert released["_key"] == booking_id and released["source"] == "service-payment"
    data = released["data"]
    assert {k: data[k] for k in ("payment_id", "runner_id", "amount_cents", "runner_payout_cents",
                                 "platform_fee_cents", "currency", "owner_id")} == {
        "payment_id": payment["id"], "runner_id": runner_id, "amount_cents": 150000,
        "runner_payout_cents": 127500, "platform_fee_cents": 22500, "currency": "MYR",
        "owner_id": owner.user["id"]}
    assert len(outbox_events(pay, "payment.escrow_released", booking_id)) == 1
    assert len(fake_stripe.calls("/capture")) >= 1
    [capture] = fake_stripe.calls(f"/v1/payment_intents/{payment['stripe_payment_id']}/capture")
    assert capture.headers["Idempotency-Key"] == f"capture-{payment['id']}"

    status, body = await owner.get(f"/api/v1/payments/{payment['id']}")
    assert body["data"]["escrow_status"] == "released"
    assert body["data"]["runner_id"] == runner_id and body["data"]["escrow_released_at"]
    assert body["data"]["version"] == 3
    # The runner sees it in their earnings list.
    status, body = await runner.get("/api/v1/payments")
    assert status == 200 and [p["id"] for p in body["data"]] == [payment["id"]]

    # Out of order: a cancellation arriving after the release refunds nothing.
    late_id, late = booking_event("booking.cancelled", booking_id,
                                  cancelled_by=owner.user["id"], reason="late")
    await pay.produce("booking.events", booking_id, late)
    await processed(pay, late_id)
    assert not outbox_events(pay, "payment.escrow_refunded", booking_id)
    assert not fake_stripe.calls(f"/v1/payment_intents/{payment['stripe_payment_id']}/cancel")
    assert pay.sql("SELECT escrow_status FROM payments WHERE id = %s", (payment["id"],)) == [
        {"escrow_status": "released"}]


async def test_cancelled_booking_refunds_held_payment_only(pay, fake_stripe, user) -> None:
    owner = user("owner")
    booking_id, payment = await paid_booking(pay, owner, price=2210)
    unpaid = insert_booking(pay, owner.user["id"])
    unpaid_event_id, unpaid_event = booking_event("booking.cancelled", unpaid,
                                                  cancelled_by=owner.user["id"], reason="x")
    event_id, event = booking_event("booking.cancelled", booking_id,
                                    cancelled_by=owner.user["id"], reason="changed plans")
    await pay.produce("booking.events", unpaid, unpaid_event)
    await pay.produce("booking.events", booking_id, event)
    [refunded] = await pay.wait_event("payment.events", "payment.escrow_refunded",
                                      booking_id=booking_id)
    assert refunded["data"]["refund_reason"] == "booking cancelled: changed plans"
    assert refunded["data"]["amount_cents"] == 2210
    assert refunded["data"]["owner_id"] == owner.user["id"]
    [cancel] = fake_stripe.calls(f"/v1/payment_intents/{payment['stripe_payment_id']}/cancel")
    assert cancel.headers["Idempotency-Key"] == f"refund-{payment['id']}"
    [row] = pay.sql("SELECT escrow_status, refund_reason, refunded_at IS NOT NULL AS r "
                    "FROM payments WHERE id = %s", (payment["id"],))
    assert row == {"escrow_status": "refunded", "refund_reason": "booking cancelled: changed plans",
                   "r": True}
    await processed(pay, unpaid_event_id)
    assert pay.sql("SELECT count(*) AS n FROM payments WHERE booking_id = %s", (unpaid,)) == [
        {"n": 0}]

    # A completion after the refund has no effect.
    late_id, late = booking_event("booking.completed", booking_id, runner_id=str(uuid.uuid4()),
                                  owner_id=owner.user["id"])
    await pay.produce("booking.events", booking_id, late)
    await processed(pay, late_id)
    assert not outbox_events(pay, "payment.escrow_released", booking_id)
    assert not fake_stripe.calls(f"/v1/payment_intents/{payment['stripe_payment_id']}/capture")


async def test_admin_refund(pay, fake_stripe, user) -> None:
    admin, owner = user("admin"), user("owner")
    booking_id, payment = await paid_booking(pay, owner, price=1999)
    assert (payment["platform_fee_cents"], payment["runner_payout_cents"]) == (299, 1700)
    path = f"/api/v1/payments/{payment['id']}/refund"
    status, body = await owner.post(path, {"reason": "mine"})
    assert (status, body) == (403, {"error": "insufficient permissions"})
    status, body = await admin.post(path, {})
    assert status == 400 and "Reason" in body["error"]
    status, body = await admin.post(f"/api/v1/payments/{uuid.uuid4()}/refund", {"reason": "x"})
    assert status == 404 and body["error"] == "Payment not found"
    status, body = await admin.post(path, {"reason": "customer complaint"})
    assert status == 200, body
    assert (body["data"]["escrow_status"], body["data"]["refund_reason"]) == (
        "refunded", "customer complaint")
    assert body["data"]["refunded_at"]
    status, body = await admin.post(path, {"reason": "again"})
    assert (status, body) == (422, {"success": False, "detail": "",
                                    "error": "cannot transition from 'refunded' to 'refunded'"})
    assert len(fake_stripe.calls(f"/{payment['stripe_payment_id']}/cancel")) == 1
    [event] = await pay.wait_event("payment.events", "payment.escrow_refunded",
                                   booking_id=booking_id)
    assert event["data"]["refund_reason"] == "customer complaint"

    status, body = await admin.get("/api/v1/admin/payments?limit=500")
    assert status == 200 and body["pagination"]["limit"] == 20
    assert payment["id"] in [p["id"] for p in body["data"]] or body["pagination"]["total"] > 20
    status, body = await admin.get("/api/v1/admin/stats/payments")
    stats = body["data"]
    assert status == 200 and stats["by_status"]["refunded"] >= 1
    assert stats["total_payments"] == sum(stats["by_status"].values())
    [revenue] = pay.sql("SELECT coalesce(sum(amount_cents), 0) AS c FROM payments "
                        "WHERE escrow_status = 'released'")
    assert stats["total_revenue_cents"] == revenue["c"]
    status, body = await owner.get("/api/v1/admin/stats/payments")
    assert status == 403


# ================================================================== payouts


async def test_cash_out_with_destinations(pay, user) -> None:
    owner, runner, other = user("owner"), user("runner"), user("runner")
    runner_id = runner.user["id"]
    booking_id, payment = await paid_booking(pay, owner, price=40000, runner_id=runner_id)
    event_id, event = booking_event("booking.completed", booking_id, runner_id=runner_id,
                                    owner_id=owner.user["id"])
    await pay.produce("booking.events", booking_id, event)
    await processed(pay, event_id)
    payout = payment["runner_payout_cents"]
    assert payout == 34000

    status, body = await runner.post("/api/v1/payouts/destinations", {
        "bank_name": "Maybank", "account_number": "1140 2233 4455", "account_holder": "Ali"})
    assert status == 201, body
    dest = body["data"]
    assert (dest["runner_id"], dest["account_number"]) == (runner_id, "114022334455")
    status, body = await runner.get("/api/v1/payouts/destinations")
    assert status == 200 and [d["id"] for d in body["data"]] == [dest["id"]]
    status, body = await other.post("/api/v1/payouts/destinations", {
        "bank_name": "CIMB", "account_number": "7000111222", "account_holder": "Bo"})
    foreign = body["data"]["id"]
    status, body = await owner.get("/api/v1/payouts/destinations")
    assert status == 403

    cases = [({"amountMyrCents": 0, "destinationId": dest["id"]},
              "amountMyrCents must be greater than 0"),
             ({"amountMyrCents": 100}, "destinationId is required"),
             ({"amountMyrCents": 100, "destinationId": "nope"},
              "destinationId must be a valid UUID"),
             ({"amountMyrCents": payout - 49, "destinationId": dest["id"]},
              "amount exceeds available balance")]
    for request, error in cases:
        status, body = await runner.post("/api/v1/payouts/cash-out", request)
        assert (status, body) == (400, {"success": False, "error": error}), request
    status, body = await runner.post("/api/v1/payouts/cash-out",
                                     {"amountMyrCents": 100, "destinationId": foreign})
    assert (status, body) == (403, {"error": "destination does not belong to runner"})

    status, body = await runner.post("/api/v1/payouts/cash-out",
                                     {"amountMyrCents": 20000, "destinationId": dest["id"]})
    assert status == 202 and set(body) == {"cashOutId", "etaMinutes"}, body
    assert body["etaMinutes"] == 1
    cash_out_id = body["cashOutId"]
    # Balance left: 34000 − (20000 + 50) = 13950.
    status, body = await runner.post("/api/v1/payouts/cash-out",
                                     {"amountMyrCents": 13901, "destinationId": dest["id"]})
    assert (status, body["error"]) == (400, "amount exceeds available balance")

    async def completed():
        rows = pay.sql("SELECT status, simulated_rail_id, completed_at, fee_myr_cents "
                       "FROM cash_out_requests WHERE id = %s", (cash_out_id,))
        return rows and rows[0]["status"] == "completed" and rows[0]
    row = await wait_until(completed, 30, what="cash-out completed on the rail")
    assert row["simulated_rail_id"].startswith("DN-") and row["fee_myr_cents"] == 50
    status, body = await runner.post("/api/v1/payouts/cash-out",
                                     {"amountMyrCents": 13900, "destinationId": dest["id"]})
    assert status == 202


# ================================================================== the client journey


def _address(lat: float, lng: float) -> dict:
    return {"line1": "1 Jalan Test", "city": "Kuala Lumpur", "state": "WP", "country": "MY",
            "latitude": lat, "longitude": lng}


async def create_booking(owner: Client) -> dict:
    status, body = await owner.post("/api/v1/bookings", {
        "pet_spec": {"pet_type": "cat", "name": "Milo", "weight_kg": 4},
        "pickup_address": _address(3.139, 101.6869), "dropoff_address": _address(3.15, 101.71)})
    assert status == 201, body
    return body["data"]


async def test_journey_pay_deliver_confirm_release_and_pay_cancel_refund(pay, fake_stripe,
                                                                        user) -> None:
    owner, runner = user("owner"), user("runner")
    booking = await create_booking(owner)
    assert booking["estimated_price_cents"] == 1510
    # What the web client sends: the amount it shows, which the server ignores.
    status, body = await owner.post("/api/v1/payments/initiate", {
        "booking_id": booking["id"], "amount_cents": 1, "currency": "MYR",
        "customer_email": "owner@kilat.test"})
    assert status == 201, body
    payment = body["data"]
    assert (payment["escrow_status"], payment["amount_cents"], payment["platform_fee_cents"],
            payment["runner_payout_cents"]) == ("held", 1510, 226, 1284)
    for step in ("accept", "pickup", "deliver"):
        status, body = await runner.post(f"/api/v1/bookings/{booking['id']}/{step}")
        assert status == 200, (step, body)
    status, body = await owner.get(f"/api/v1/payments/booking/{booking['id']}")
    assert body["data"]["escrow_status"] == "held"  # delivered, waiting for the owner
    status, body = await owner.post(f"/api/v1/bookings/{booking['id']}/confirm")
    assert status == 200 and body["data"]["status"] == "completed", body

    async def released():
        status, body = await owner.get(f"/api/v1/payments/booking/{booking['id']}")
        return status == 200 and body["data"]["escrow_status"] == "released" and body["data"]
    done = await wait_until(released, 30, what="escrow released after the owner's confirm")
    assert done["runner_id"] == runner.user["id"]
    [event] = await pay.wait_event("payment.events", "payment.escrow_released",
                                   booking_id=booking["id"])
    assert event["data"]["runner_payout_cents"] == 1284
    status, body = await runner.get(f"/api/v1/payments/{payment['id']}")
    assert status == 200 and body["data"]["escrow_status"] == "released"

    second = await create_booking(owner)
    status, body = await owner.post("/api/v1/payments/initiate", {"booking_id": second["id"]})
    assert status == 201, body
    status, body = await owner.post(f"/api/v1/bookings/{second['id']}/cancel",
                                    {"reason": "vet appointment moved"})
    assert status == 200, body

    async def refunded():
        status, body = await owner.get(f"/api/v1/payments/booking/{second['id']}")
        return body["data"]["escrow_status"] == "refunded" and body["data"]
    done = await wait_until(refunded, 30, what="escrow refunded after cancel")
    assert done["refund_reason"] == "booking cancelled: vet appointment moved"


# ================================================================== subscriptions are charged


async def test_subscription_is_charged_before_it_applies(pay, fake_stripe, user) -> None:
    """DESIGN 12: a subscription is charged through the payment adapter (own payment kind,
    idempotency key) before it is active; a refused charge leaves it inactive; re-subscribing
    within a paid period neither charges twice nor extends for free."""
    owner = user("owner")
    subs = "/api/v1/subscriptions"

    # A declined card: 402, nothing active, no discount, the failed charge is on record.
    fake_stripe.decline_next = 1
    status, body = await owner.post(subs, {"plan": "premium"})
    assert (status, body["error"]) == (402, "payment failed"), body
    assert "card was declined" in body["detail"]
    assert (await owner.get(f"{subs}/me"))[0] == 404
    booking_id = insert_booking(pay, owner.user["id"], price=20000)
    status, body = await owner.post("/api/v1/payments/initiate", {"booking_id": booking_id})
    assert status == 201 and body["data"]["amount_cents"] == 20000, body  # no discount
    status, body = await owner.get("/api/v1/payments")
    [failed] = [p for p in body["data"] if p.get("kind") == "subscription"]
    assert (failed["escrow_status"], failed["amount_cents"]) == ("failed", 4990)
    assert "booking_id" not in failed and failed["subscription_id"]
    assert pay.sql("SELECT status FROM subscriptions WHERE id = %s",
                   (failed["subscription_id"],)) == [{"status": "failed"}]

    # Charged (automatic capture, its own idempotency key), then active.
    status, body = await owner.post(subs, {"plan": "premium"})
    assert status == 201 and body["data"]["status"] == "active", body
    sub = body["data"]
    [row] = pay.sql("SELECT id::text, escrow_status, amount_cents, stripe_payment_id FROM payments "
                    "WHERE kind = 'subscription' AND subscription_id = %s", (sub["id"],))
    assert (row["escrow_status"], row["amount_cents"]) == ("released", 4990)
    [charge] = fake_stripe.calls(key=f"subscription-{row['id']}")
    assert charge.path == "/v1/payment_intents"
    assert (charge.form["amount"], charge.form["capture_method"],
            charge.form["metadata[subscription_id]"]) == ("4990", "automatic", sub["id"])
    assert fake_stripe.intents[row["stripe_payment_id"]]["status"] == "succeeded"
    status, body = await owner.get("/api/v1/payments")
    listed = {p["id"]: p for p in body["data"]}
    assert listed[row["id"]]["kind"] == "subscription"
    assert listed[row["id"]]["escrow_status"] == "released"
    [event] = await pay.wait_event("payment.events", "payment.subscription_charged",
                                   subscription_id=sub["id"])
    assert event["_key"] == owner.user["id"] and event["data"]["amount_cents"] == 4990

    # Cancel, then subscribe again within the paid period: the same period, no new charge.
    charges = len(fake_stripe.calls("/v1/payment_intents"))
    assert (await owner.post(f"{subs}/me/cancel"))[1]["data"]["status"] == "cancelled"
    status, body = await owner.post(subs, {"plan": "premium"})
    assert status == 201, body
    assert (body["data"]["id"], body["data"]["status"], body["data"]["expires_at"],
            body["data"]["auto_renew"]) == (sub["id"], "active", sub["expires_at"], True)
    assert len(fake_stripe.calls("/v1/payment_intents")) == charges
    assert pay.sql("SELECT count(*) AS n FROM payments WHERE kind = 'subscription' "
                   "AND owner_id = %s AND escrow_status = 'released'",
                   (owner.user["id"],)) == [{"n": 1}]
    status, body = await owner.post(subs, {"plan": "basic"})
    assert (status, body["error"]) == (409, "you already have an active premium subscription")

    # Admins see the charge among all payments; a booking payment keeps the contract's shape.
    status, body = await user("admin").get("/api/v1/admin/payments?limit=100")
    assert row["id"] in [p["id"] for p in body["data"]]
    status, body = await owner.get(f"/api/v1/payments/booking/{booking_id}")
    assert "kind" not in body["data"] and body["data"]["booking_id"] == booking_id
