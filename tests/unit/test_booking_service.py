"""services/booking.py through in-memory fakes of its ports: no broker, no database."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from domain import booking as rules
from services import booking as bookings
from services import payment as payments
from services.booking import Actor
from services.errors import Forbidden, NotFound
from services.payment import Payer
from tests.unit.payment_fakes import NOW, Fakes, booking_ports, make_fakes

OWNER = Actor(str(uuid.uuid4()), "owner")
RUNNER = Actor(str(uuid.uuid4()), "runner")
ADMIN = Actor(str(uuid.uuid4()), "admin")
STRANGER = Actor(str(uuid.uuid4()), "owner")
PET = {"pet_type": "cat", "name": "Milo", "weight_kg": 4}


def _address(lat: float, lng: float) -> dict:
    return {"line1": "1 Jalan Ampang", "line2": "", "city": "Kuala Lumpur", "state": "WP",
            "postal_code": "50450", "country": "MY", "latitude": lat, "longitude": lng}


@pytest.fixture
def f() -> Fakes:
    return make_fakes()


async def _booked(f: Fakes, ports) -> dict:
    return await bookings.book(OWNER.user_id, PET, _address(3.1579, 101.7117),
                               _address(3.1390, 101.6869), notes="fragile", ports=ports)


def _types(f: Fakes) -> list[str]:
    return [t for _topic, _key, t, _data in f.world.outbox]


async def test_the_whole_journey_with_the_money_held(f: Fakes) -> None:
    ports = booking_ports(f)
    booking = await _booked(f, ports)
    assert booking["status"] == "requested" and booking["estimated_price_cents"] > 0
    booking_id = booking["id"]
    assert (await bookings.accept(RUNNER, booking_id, ports=ports))["runner_id"] == RUNNER.user_id
    with pytest.raises(rules.NotPaid):  # no pickup of an unpaid pet
        await bookings.pickup(RUNNER, booking_id, ports=ports)
    await payments.initiate_payment(Payer(OWNER.user_id), booking_id, ports=f.ports)
    await bookings.pickup(RUNNER, booking_id, ports=ports)
    await bookings.deliver(RUNNER, booking_id, ports=ports)
    with pytest.raises(rules.NotAllowed):
        await bookings.confirm(STRANGER, booking_id, ports=ports)
    done = await bookings.confirm(OWNER, booking_id, ports=ports)
    assert done["status"] == "completed" and done["completed_by"] == rules.BY_OWNER
    assert _types(f) == ["booking.requested", "booking.accepted", "runner.assigned",
                         "payment.escrow_created", "payment.escrow_held",
                         "booking.pet_picked_up", "booking.delivery_confirmed",
                         "runner.released", "booking.completed"]
    with pytest.raises(rules.InvalidTransition):
        await bookings.cancel(OWNER, booking_id, "too late", ports=ports)


async def test_reads_and_refusals(f: Fakes) -> None:
    ports = booking_ports(f)
    with pytest.raises(NotFound, match="Booking not found"):
        await bookings.view(OWNER, str(uuid.uuid4()), ports=ports)
    booking = await _booked(f, ports)
    assert (await bookings.view(RUNNER, booking["id"], ports=ports))["id"] == booking["id"]
    with pytest.raises(Forbidden, match="forbidden"):  # not an open job for other owners
        await bookings.view(STRANGER, booking["id"], ports=ports)
    again = await bookings.rebook(OWNER, booking["id"], ports=ports)
    assert again["id"] != booking["id"] and again["notes"] == "fragile"


async def test_decline_records_the_reason_and_reopens_the_job(f: Fakes) -> None:
    ports = booking_ports(f)
    booking = await _booked(f, ports)
    await bookings.accept(RUNNER, booking["id"], ports=ports)
    reason = rules.DECLINE_REASONS[0]
    row = await bookings.decline(RUNNER, booking["id"], reason, ports=ports)
    assert row["status"] == "requested"
    assert ports.bookings.decline_reasons == [(booking["id"], RUNNER.user_id, reason)]


async def _delivered(f: Fakes, ports) -> str:
    booking = await _booked(f, ports)
    await bookings.accept(RUNNER, booking["id"], ports=ports)
    await payments.initiate_payment(Payer(OWNER.user_id), booking["id"], ports=f.ports)
    await bookings.pickup(RUNNER, booking["id"], ports=ports)
    await bookings.deliver(RUNNER, booking["id"], ports=ports)
    return booking["id"]


async def test_a_dispute_freezes_the_money_until_an_admin_resolves_it(f: Fakes) -> None:
    ports = booking_ports(f)
    booking_id = await _delivered(f, ports)
    await bookings.dispute(OWNER, booking_id, "the crate was broken", ports=ports)
    with pytest.raises(rules.Disputed):
        await bookings.confirm(OWNER, booking_id, ports=ports)
    assert not await bookings.auto_confirm(booking_id, ports=ports)
    row = await bookings.resolve(ADMIN, booking_id, "refund", "crate broken", ports=ports)
    assert row["status"] == "cancelled"
    [cancelled] = f.world.events("booking.cancelled")
    assert cancelled["cancelled_by"] == ADMIN.user_id


async def test_the_platform_confirms_after_the_window_only(f: Fakes) -> None:
    ports = booking_ports(f, window_hours=1.0)
    booking_id = await _delivered(f, ports)
    assert not await bookings.auto_confirm(booking_id, ports=ports)  # window still open
    f.world.bookings[booking_id]["delivered_at"] = NOW - timedelta(hours=2)
    assert await bookings.auto_confirm(booking_id, ports=ports)
    assert not await bookings.auto_confirm(booking_id, ports=ports)  # once
    [completed] = f.world.events("booking.completed")
    assert completed["auto_confirmed"] is True
