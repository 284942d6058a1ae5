"""services/payment.py through in-memory fakes of its ports: no broker, no database."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from domain.payment import InvalidTransition
from services import payment as payments
from services.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    PaymentDeclined,
    ProviderUnavailable,
    Unprocessable,
)
from services.payment import Payer
from tests.unit.payment_fakes import NOW, Fakes, make_fakes

OWNER = Payer(str(uuid.uuid4()), "owner@kilat.test")
RUNNER = str(uuid.uuid4())


@pytest.fixture
def f() -> Fakes:
    return make_fakes()


def booking(f: Fakes, *, status: str = "accepted", price: int = 150_000,
            owner: str = OWNER.user_id) -> str:
    booking_id = str(uuid.uuid4())
    f.world.bookings[booking_id] = {"id": booking_id, "owner_id": owner, "status": status,
                                    "estimated_price_cents": price, "currency": "MYR",
                                    "runner_id": RUNNER if status == "accepted" else None}
    return booking_id


async def held(f: Fakes, **kw) -> tuple[str, dict]:
    booking_id = booking(f, **kw)
    return booking_id, await payments.initiate_payment(OWNER, booking_id, ports=f.ports)


def types(f: Fakes) -> list[str]:
    return [t for _topic, _key, t, _data in f.world.outbox]


# ------------------------------------------------------------------ create_escrow


async def test_initiate_holds_the_escrow_priced_from_the_booking(f: Fakes) -> None:
    f.world.promos["SAVE10"] = {"id": "p1", "code": "SAVE10", "discount_type": "fixed",
                                "discount_value": 10_000, "min_amount_cents": 0,
                                "max_discount_cents": 0, "max_uses": 0, "current_uses": 0,
                                "valid_from": NOW - timedelta(days=1),
                                "valid_until": NOW + timedelta(days=1)}
    booking_id = booking(f)
    payment = await payments.initiate_payment(OWNER, booking_id, promo_code=" save10 ",
                                              ports=f.ports)
    assert payment["escrow_status"] == "held" and payment["amount_cents"] == 140_000
    assert (payment["platform_fee_cents"], payment["runner_payout_cents"]) == (21_000, 119_000)
    assert f.provider.effects("create") == [f"hold-{payment['id']}"]
    assert types(f) == ["payment.escrow_created", "payment.escrow_held"]
    assert f.world.events("payment.escrow_held")[0]["runner_id"] == RUNNER
    assert f.world.promos["SAVE10"]["current_uses"] == 1


async def test_initiate_refusals(f: Fakes) -> None:
    with pytest.raises(NotFound, match="Booking not found"):
        await payments.initiate_payment(OWNER, str(uuid.uuid4()), ports=f.ports)
    with pytest.raises(Forbidden):
        await payments.initiate_payment(OWNER, booking(f, owner=str(uuid.uuid4())),
                                        ports=f.ports)
    with pytest.raises(Unprocessable, match="status 'completed'"):
        await payments.initiate_payment(OWNER, booking(f, status="completed"), ports=f.ports)
    with pytest.raises(Invalid, match="promo code not found"):
        await payments.initiate_payment(OWNER, booking(f), promo_code="NOPE", ports=f.ports)
    booking_id, _ = await held(f)
    with pytest.raises(Conflict, match="payment already exists"):
        await payments.initiate_payment(OWNER, booking_id, ports=f.ports)
    assert f.provider.effects("create") != [] and len(f.world.payments) == 1


async def test_a_provider_outage_is_compensated(f: Fakes) -> None:
    f.provider.unreachable = 1
    booking_id = booking(f)
    with pytest.raises(ProviderUnavailable) as err:
        await payments.initiate_payment(OWNER, booking_id, ports=f.ports)
    assert err.value.detail.startswith(
        "saga 'create_escrow' failed at step 'create_payment_intent': HTTP 503")
    [payment] = f.world.payments.values()
    assert payment["escrow_status"] == "failed"
    [failed] = f.world.events("payment.failed")
    assert failed["escrow_status"] == "failed" and failed["reason"] == err.value.detail


# ------------------------------------------------------------------ release and refund


async def test_release_moves_the_money_once(f: Fakes) -> None:
    booking_id, payment = await held(f)
    first = await payments.release_escrow(booking_id, RUNNER, ports=f.ports)
    again = await payments.release_escrow(booking_id, RUNNER, ports=f.ports)
    assert (first.outcome, again.outcome) == ("done", "nothing")
    assert first.payment["escrow_status"] == "released" and first.payment["runner_id"] == RUNNER
    assert f.provider.effects("capture") == [f"capture-{payment['id']}"]
    [event] = f.world.events("payment.escrow_released")
    assert (event["runner_payout_cents"], event["amount_cents"]) == (127_500, 150_000)


async def test_a_release_cut_short_after_the_capture_is_finished_with_the_same_key(
        f: Fakes) -> None:
    """The capture reached the provider, then the transaction died before committing (a worker
    frozen and cut off): the retry captures with the same key, so the money moves once."""
    booking_id, payment = await held(f)

    class Cut(Exception):
        pass

    with pytest.raises(Cut):
        async with f.db.transaction() as conn:
            outcome = await payments.release_escrow(booking_id, RUNNER, conn=conn, ports=f.ports)
            assert outcome.outcome == "done"
            raise Cut
    assert f.world.payments[payment["id"]]["escrow_status"] == "held"
    assert f.provider.intents[payment["stripe_payment_id"]] == "succeeded"  # captured already

    outcome = await payments.release_escrow(booking_id, RUNNER, announce_failure=False,
                                            skip_locked=True, ports=f.ports)
    assert outcome.outcome == "done"
    assert f.provider.effects("capture") == [f"capture-{payment['id']}"]
    assert len(f.world.events("payment.escrow_released")) == 1


async def test_a_failed_capture_leaves_the_money_held(f: Fakes) -> None:
    booking_id, payment = await held(f)
    f.provider.unreachable = 2
    announced = await payments.release_escrow(booking_id, RUNNER, ports=f.ports)
    quiet = await payments.release_escrow(booking_id, RUNNER, announce_failure=False,
                                          ports=f.ports)
    assert (announced.outcome, quiet.outcome) == ("failed", "failed")
    [failed] = f.world.events("payment.failed")  # the quiet retry announced nothing
    assert failed["escrow_status"] == "held"
    assert failed["reason"].startswith("saga 'release_escrow' failed at step 'capture'")
    assert f.world.payments[payment["id"]]["escrow_status"] == "held"
    assert (await payments.release_escrow(booking_id, RUNNER, ports=f.ports)).outcome == "done"


async def test_a_payment_someone_else_holds_is_skipped(f: Fakes) -> None:
    booking_id, payment = await held(f)
    f.world.locked.add(payment["id"])
    outcome = await payments.release_escrow(booking_id, RUNNER, skip_locked=True, ports=f.ports)
    assert outcome.outcome == "nothing" and not f.provider.effects("capture")


async def test_refunds(f: Fakes) -> None:
    booking_id, payment = await held(f)
    outcome = await payments.refund_cancelled(booking_id, "owner changed plans", ports=f.ports)
    assert outcome.payment["refund_reason"] == "booking cancelled: owner changed plans"
    assert f.provider.effects("cancel") == [f"refund-{payment['id']}"]
    with pytest.raises(InvalidTransition):  # an admin refund of a refunded payment
        await payments.refund_payment(payment["id"], "again", ports=f.ports)

    _, other = await held(f)
    f.provider.unreachable = 1
    with pytest.raises(ProviderUnavailable, match="payment provider unavailable"):
        await payments.refund_payment(other["id"], "damaged crate", ports=f.ports)
    assert f.world.payments[other["id"]]["escrow_status"] == "held"
    with pytest.raises(Invalid, match="reason is required"):
        await payments.refund_payment(other["id"], "  ", ports=f.ports)
    refunded = await payments.refund_payment(other["id"], " damaged crate ", ports=f.ports)
    assert (refunded["escrow_status"], refunded["refund_reason"]) == ("refunded", "damaged crate")


# ------------------------------------------------------------------ subscriptions and payouts


async def test_subscriptions_are_charged_before_they_apply(f: Fakes) -> None:
    f.provider.decline = True
    with pytest.raises(PaymentDeclined, match="payment failed"):
        await payments.subscribe(OWNER, "basic", ports=f.ports)
    assert [s["status"] for s in f.world.subscriptions.values()] == ["failed"]
    f.provider.decline = False
    sub = await payments.subscribe(OWNER, " Premium ", ports=f.ports)
    assert sub["status"] == "active" and f.world.events("payment.subscription_charged")
    with pytest.raises(Conflict, match="already have an active premium"):
        await payments.subscribe(OWNER, "premium", ports=f.ports)
    await payments.cancel_subscription(OWNER.user_id, ports=f.ports)
    again = await payments.subscribe(OWNER, "premium", ports=f.ports)
    assert again["id"] == sub["id"] and len(f.provider.effects("charge")) == 1
    with pytest.raises(Invalid, match="invalid plan: gold"):
        await payments.subscribe(OWNER, "gold", ports=f.ports)


async def test_cash_out_spends_released_payouts_only(f: Fakes) -> None:
    booking_id, _ = await held(f)
    await payments.release_escrow(booking_id, RUNNER, ports=f.ports)
    dest = await payments.add_destination(RUNNER, "Maybank", "1234-5678 90", "R", ports=f.ports)
    assert dest["account_number"] == "1234567890"
    with pytest.raises(payments.NotYourDestination):
        await payments.request_cash_out(str(uuid.uuid4()), 100, dest["id"], ports=f.ports)
    with pytest.raises(Invalid, match="exceeds available balance"):
        await payments.request_cash_out(RUNNER, 127_500, dest["id"], ports=f.ports)
    row = await payments.request_cash_out(RUNNER, 127_450, dest["id"], ports=f.ports)
    assert row["status"] == "pending"
