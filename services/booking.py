"""Booking use cases: book, rebook, the lifecycle moves (accept, pickup, deliver, confirm,
dispute, cancel, decline, resolve), the platform's confirm after the owner's window, photos.

Every move is one transaction: load the booking, check the actor (domain.booking.check_actor),
decide the transition with the pure rules of `domain/booking.py`, and commit the row, its
history and its events together (stores/booking.commit_transition). Refusals are the rules'
own exceptions (InvalidTransition, NotAllowed, Disputed, NotPaid, ...) and `services.errors`;
`web/booking.py` maps them to the contract's answers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain import booking as rules
from services.errors import Forbidden, NotFound
from services.ports import BookingPorts, Conn, Row, booking_ports

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actor:
    """Who asks: the signed-in user's id and role."""

    user_id: str
    role: str


Decide = Callable[[Row], rules.Transition]
Guard = Callable[[BookingPorts, Conn, Row], Awaitable[None]]


def _ports(ports: BookingPorts | None) -> BookingPorts:
    return ports or booking_ports()


async def _load(p: BookingPorts, conn: Conn, booking_id: str, *,
                for_update: bool = False) -> Row:
    booking = await p.bookings.get_booking(conn, booking_id, for_update=for_update)
    if booking is None:
        raise NotFound("Booking", booking_id)
    return booking


async def _move(p: BookingPorts, actor: Actor, booking_id: str, action: str, decide: Decide,
                guard: Guard | None = None) -> Row:
    """Load → authorise → decide → (guard) → commit (row, history, events), one transaction."""
    async with p.db.transaction() as conn:
        booking = await _load(p, conn, booking_id)
        rules.check_actor(action, booking, actor.user_id, actor.role)
        change = decide(booking)
        if guard is not None:
            await guard(p, conn, booking)
        return await p.bookings.commit_transition(conn, booking, change, actor.user_id)


async def _create(p: BookingPorts, conn: Conn, owner_id: str, pet_spec: dict[str, Any],
                  pickup: dict[str, Any], dropoff: dict[str, Any], notes: str,
                  scheduled_at: datetime | None) -> Row:
    """Price and insert a new requested booking, with its history row and event."""
    q = rules.quote(pet_spec, pickup, dropoff)
    values = {
        "owner_id": owner_id, "status": rules.REQUESTED,
        "pet_spec": {**pet_spec, "pet_type": q.pet_type}, "crate_requirement": q.crate,
        "pickup_address": pickup, "dropoff_address": dropoff,
        "estimated_price_cents": q.price_cents, "currency": rules.CURRENCY,
        "scheduled_at": scheduled_at, "notes": notes or None,
    }
    row = None
    for _ in range(5):  # a booking number collision is ~1 in 10^9: draw again
        row = await p.bookings.insert_booking(
            conn, {**values, "booking_number": rules.new_booking_number()},
            pickup["latitude"], pickup["longitude"])
        if row is not None:
            break
    if row is None:
        raise RuntimeError("could not allocate a booking number")
    await p.bookings.add_history(conn, row["id"], None, rules.REQUESTED, owner_id, None)
    await p.bookings.emit_all(conn, [rules.requested_event(row)])
    return row


async def book(owner_id: str, pet_spec: dict[str, Any], pickup: dict[str, Any],
               dropoff: dict[str, Any], *, notes: str = "", scheduled_at: datetime | None = None,
               ports: BookingPorts | None = None) -> Row:
    """A new requested booking, priced from the pet and the route."""
    p = _ports(ports)
    async with p.db.transaction() as conn:
        return await _create(p, conn, owner_id, pet_spec, pickup, dropoff, notes, scheduled_at)


async def rebook(actor: Actor, booking_id: str, *, ports: BookingPorts | None = None) -> Row:
    """A new requested booking with the same pet, addresses and notes (not the schedule)."""
    p = _ports(ports)
    async with p.db.transaction() as conn:
        old = await _load(p, conn, booking_id)
        rules.check_actor("rebook", old, actor.user_id, actor.role)
        return await _create(p, conn, actor.user_id, old["pet_spec"], old["pickup_address"],
                             old["dropoff_address"], old.get("notes") or "", None)


async def view(actor: Actor, booking_id: str, *, ports: BookingPorts | None = None) -> Row:
    p = _ports(ports)
    async with p.db.transaction() as conn:
        booking = await _load(p, conn, booking_id)
    if not rules.may_view(booking, actor.user_id, actor.role):
        raise Forbidden("forbidden", "you are not a participant of this booking")
    return booking


async def accept(actor: Actor, booking_id: str, *, ports: BookingPorts | None = None) -> Row:
    p = _ports(ports)
    return await _move(p, actor, booking_id, "accept",
                       lambda b: rules.accept(b, actor.user_id, p.now()))


async def _escrow_held(p: BookingPorts, conn: Conn, booking: Row) -> None:
    """No pickup of an unpaid pet. The payment row is locked so that a concurrent admin refund
    cannot slip in between this check and the pickup."""
    payment = await p.payments.get_payment_by_booking(conn, booking["id"], for_update=True)
    rules.check_pickup_paid(payment["escrow_status"] if payment else None)


async def pickup(actor: Actor, booking_id: str, *, ports: BookingPorts | None = None) -> Row:
    """accepted → in_progress, only while the owner's payment is held (NotPaid otherwise)."""
    p = _ports(ports)
    return await _move(p, actor, booking_id, "pickup", lambda b: rules.pickup(b, p.now()),
                       _escrow_held)


async def deliver(actor: Actor, booking_id: str, *, ports: BookingPorts | None = None) -> Row:
    """in_progress → delivered; the escrow stays held until the owner confirms."""
    p = _ports(ports)
    return await _move(p, actor, booking_id, "deliver", lambda b: rules.deliver(b, p.now()))


async def confirm(actor: Actor, booking_id: str, *, ports: BookingPorts | None = None) -> Row:
    """delivered → completed by the owner, which releases the escrow to the runner."""
    return await _move(_ports(ports), actor, booking_id, "confirm",
                       lambda b: rules.complete(b, rules.BY_OWNER))


async def dispute(actor: Actor, booking_id: str, reason: str, *,
                  ports: BookingPorts | None = None) -> Row:
    """The owner disputes a delivery within the window: the escrow stays frozen until an admin
    resolves it."""
    p = _ports(ports)
    return await _move(p, actor, booking_id, "dispute",
                       lambda b: rules.dispute(b, reason, p.now(), p.window_hours()))


async def cancel(actor: Actor, booking_id: str, reason: str, *,
                 ports: BookingPorts | None = None) -> Row:
    p = _ports(ports)
    return await _move(p, actor, booking_id, "cancel",
                       lambda b: rules.cancel(b, actor.user_id, reason, p.now()))


async def resolve(actor: Actor, booking_id: str, outcome: str, note: str, *,
                  ports: BookingPorts | None = None) -> Row:
    """An admin resolves an open dispute: `release` completes the booking (the runner is
    paid), `refund` cancels it (the owner gets the money back)."""
    p = _ports(ports)
    return await _move(p, actor, booking_id, "resolve",
                       lambda b: rules.resolve_dispute(b, outcome, note, actor.user_id, p.now()))


async def decline(actor: Actor, booking_id: str, reason: str, *,
                  ports: BookingPorts | None = None) -> Row:
    """accepted → requested by the assigned runner, with a reason."""
    p = _ports(ports)
    async with p.db.transaction() as conn:
        booking = await _load(p, conn, booking_id)
        rules.check_actor("decline", booking, actor.user_id, actor.role)
        row = await p.bookings.commit_transition(conn, booking, rules.decline(booking, reason),
                                                 actor.user_id)
        await p.bookings.add_decline_reason(conn, booking_id, actor.user_id, reason)
        return row


async def auto_confirm(booking_id: str, *, ports: BookingPorts | None = None) -> bool:
    """Complete a delivered booking on its owner's behalf if (on the locked row) it is still
    delivered, undisputed and past its window. True if it was confirmed now."""
    p = _ports(ports)
    window_hours = p.window_hours()
    async with p.db.transaction() as conn:
        booking = await p.bookings.get_booking(conn, booking_id, for_update=True)
        if booking is None:
            return False
        change = rules.auto_confirm(booking, p.now(), window_hours)
        if change is None:
            return False
        await p.bookings.commit_transition(conn, booking, change, None)
    log.info("booking %s auto-confirmed after %g h without the owner", booking_id, window_hours)
    return True


async def add_photo(actor: Actor, booking_id: str, photo_type: str, photo_url: str,
                    caption: str, *, ports: BookingPorts | None = None) -> Row:
    p = _ports(ports)
    async with p.db.transaction() as conn:
        booking = await _load(p, conn, booking_id)
        rules.check_actor("photo", booking, actor.user_id, actor.role)
        return await p.bookings.add_photo(conn, booking_id, actor.user_id, photo_type,
                                          photo_url, caption)


async def photos(actor: Actor, booking_id: str, *, ports: BookingPorts | None = None) -> list[Row]:
    p = _ports(ports)
    async with p.db.transaction() as conn:
        booking = await _load(p, conn, booking_id)
        rules.check_actor("photos", booking, actor.user_id, actor.role)
        return await p.bookings.list_photos(conn, booking_id)
