"""In-memory fakes of the payment use cases' ports (services/ports.py).

One `World` holds every row; `FakeDatabase.transaction()` yields it and puts it back as it was
when the block raises, like a rolled-back transaction. The store fake answers like
stores/payment.py for the calls the use cases make.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.stripe import PaymentIntent, StripeError
from services.ports import PaymentPorts

Row = dict[str, Any]
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@dataclass
class World:
    bookings: dict[str, Row] = field(default_factory=dict)
    payments: dict[str, Row] = field(default_factory=dict)
    promos: dict[str, Row] = field(default_factory=dict)
    promo_uses: list[Row] = field(default_factory=list)
    subscriptions: dict[str, Row] = field(default_factory=dict)
    destinations: dict[str, Row] = field(default_factory=dict)
    cash_outs: list[Row] = field(default_factory=list)
    outbox: list[tuple[str, str, str, dict]] = field(default_factory=list)
    locked: set[str] = field(default_factory=set)  # rows "another transaction" holds

    def events(self, type_: str) -> list[dict]:
        return [data for _topic, _key, t, data in self.outbox if t == type_]


class FakeDatabase:
    def __init__(self, world: World) -> None:
        self.world = world
        self.commits = 0

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[World]:
        saved = copy.deepcopy(self.world.__dict__)
        try:
            yield self.world
        except BaseException:
            self.world.__dict__.update(saved)
            raise
        self.commits += 1


def _new_id() -> str:
    return str(uuid.uuid4())


class FakeBookings:
    async def get_booking(self, conn: World, booking_id: str, *,
                          for_update: bool = False) -> Row | None:
        row = conn.bookings.get(booking_id)
        return dict(row) if row else None


class FakePaymentStore:
    """The subset of stores/payment.py the use cases call, over a World."""

    async def get_payment(self, conn: World, payment_id: str, *,
                          for_update: bool = False) -> Row | None:
        row = conn.payments.get(payment_id)
        return dict(row) if row else None

    async def get_payment_by_booking(self, conn: World, booking_id: str, *,
                                     for_update: bool = False,
                                     skip_locked: bool = False) -> Row | None:
        for row in conn.payments.values():
            if row["booking_id"] == booking_id:
                if skip_locked and row["id"] in conn.locked:
                    return None
                return dict(row)
        return None

    async def insert_payment(self, conn: World, **values: Any) -> Row:
        row = {"id": _new_id(), "escrow_status": "pending", "version": 1, "runner_id": None,
               "stripe_payment_id": None, "kind": "booking", "subscription_id": None,
               "created_at": NOW, **values}
        conn.payments[row["id"]] = row
        return dict(row)

    async def held_booking_payments(self, conn: World, limit: int = 1000) -> list[Row]:
        return [dict(p) for p in conn.payments.values()
                if p["escrow_status"] == "held" and p["booking_id"]][:limit]

    async def update_payment(self, conn: World, payment: Row, **changes: Any) -> Row | None:
        row = conn.payments.get(payment["id"])
        if row is None or row["version"] != payment["version"]:
            return None
        row.update(changes, version=row["version"] + 1)
        return dict(row)

    async def get_promo_by_code(self, conn: World, code: str, *,
                                for_update: bool = False) -> Row | None:
        row = conn.promos.get(code)
        return dict(row) if row else None

    async def promo_used_by(self, conn: World, promo_id: str, user_id: str) -> bool:
        return any(u["promo_id"] == promo_id and u["user_id"] == user_id for u in conn.promo_uses)

    async def record_promo_use(self, conn: World, promo_id: str, user_id: str, booking_id: str,
                               discount_cents: int) -> None:
        conn.promo_uses.append({"promo_id": promo_id, "user_id": user_id,
                                "booking_id": booking_id, "discount_cents": discount_cents})
        for promo in conn.promos.values():
            if promo["id"] == promo_id:
                promo["current_uses"] += 1

    async def undo_promo_use(self, conn: World, booking_id: str) -> None:
        for use in [u for u in conn.promo_uses if u["booking_id"] == booking_id]:
            conn.promo_uses.remove(use)
            for promo in conn.promos.values():
                if promo["id"] == use["promo_id"]:
                    promo["current_uses"] -= 1

    async def insert_promo(self, conn: World, **values: Any) -> Row | None:
        if values["code"] in conn.promos:
            return None
        conn.promos[values["code"]] = {"id": _new_id(), "current_uses": 0, **values}
        return dict(conn.promos[values["code"]])

    async def lock_user_subscriptions(self, conn: World, user_id: str) -> None:
        return None

    async def expire_subscriptions(self, conn: World, user_id: str) -> None:
        for sub in conn.subscriptions.values():
            if sub["user_id"] == user_id and sub["status"] == "active" \
                    and sub["expires_at"] <= NOW:
                sub["status"] = "expired"

    def _subscription(self, conn: World, user_id: str, status: str) -> Row | None:
        return next((dict(s) for s in conn.subscriptions.values()
                     if s["user_id"] == user_id and s["status"] == status
                     and (status != "active" or s["expires_at"] > NOW)), None)

    async def active_subscription(self, conn: World, user_id: str, *,
                                  for_update: bool = False) -> Row | None:
        return self._subscription(conn, user_id, "active")

    async def pending_subscription(self, conn: World, user_id: str) -> Row | None:
        return self._subscription(conn, user_id, "pending")

    async def paid_cancelled_subscription(self, conn: World, user_id: str, plan: str, *,
                                          for_update: bool = False) -> Row | None:
        charged = {p["subscription_id"] for p in conn.payments.values()
                   if p["kind"] == "subscription" and p["escrow_status"] == "released"}
        return next((dict(s) for s in conn.subscriptions.values()
                     if s["user_id"] == user_id and s["plan"] == plan
                     and s["status"] == "cancelled" and s["expires_at"] > NOW
                     and s["id"] in charged), None)

    async def set_subscription_status(self, conn: World, sub_id: str, status: str,
                                      **changes: Any) -> Row | None:
        conn.subscriptions[sub_id].update(changes, status=status)
        return dict(conn.subscriptions[sub_id])

    async def subscription_payment(self, conn: World, sub_id: str, *,
                                   for_update: bool = False) -> Row | None:
        return next((dict(p) for p in conn.payments.values()
                     if p["subscription_id"] == sub_id), None)

    async def insert_subscription(self, conn: World, **values: Any) -> Row:
        row = {"id": _new_id(), "auto_renew": True, **values}
        conn.subscriptions[row["id"]] = row
        return dict(row)

    async def cancel_subscription(self, conn: World, sub_id: str) -> Row | None:
        return await self.set_subscription_status(conn, sub_id, "cancelled", auto_renew=False)

    async def insert_destination(self, conn: World, **values: Any) -> Row:
        row = {"id": _new_id(), **values}
        conn.destinations[row["id"]] = row
        return dict(row)

    async def destination_of(self, conn: World, destination_id: str,
                             runner_id: str) -> Row | None:
        row = conn.destinations.get(destination_id)
        return dict(row) if row and row["runner_id"] == runner_id else None

    async def lock_runner_balance(self, conn: World, runner_id: str) -> None:
        return None

    async def available_balance(self, conn: World, runner_id: str) -> int:
        earned = sum(p["runner_payout_cents"] for p in conn.payments.values()
                     if p["runner_id"] == runner_id and p["escrow_status"] == "released")
        spent = sum(c["amount_myr_cents"] + 50 for c in conn.cash_outs
                    if c["runner_id"] == runner_id)
        return earned - spent

    async def insert_cash_out(self, conn: World, **values: Any) -> Row:
        row = {"id": _new_id(), "status": "pending", **values}
        conn.cash_outs.append(row)
        return dict(row)


class FakeProvider:
    """PaymentIntents like Stripe's: a repeated idempotency key gets the first answer and has
    no second effect. `unreachable` > 0 makes that many calls fail like a provider outage;
    `decline` makes creations and charges fail like a refused card."""

    def __init__(self) -> None:
        self.intents: dict[str, str] = {}
        self.answers: dict[str, PaymentIntent] = {}
        self.calls: list[tuple[str, str]] = []
        self.unreachable = 0
        self.decline = False
        self._ids = itertools.count(1)

    def effects(self, op: str) -> list[str]:
        """Idempotency keys of the calls of `op` that took effect (first answers only)."""
        return [key for name, key in self.calls if name == op]

    async def _once(self, op: str, key: str, act) -> PaymentIntent:
        if self.unreachable:
            self.unreachable -= 1
            raise StripeError("HTTP 503: provider unavailable")
        if key not in self.answers:
            self.answers[key] = act()
            self.calls.append((op, key))
        return self.answers[key]

    def _new(self, amount: int, currency: str, status: str) -> PaymentIntent:
        if self.decline:
            raise StripeError("HTTP 402: Your card was declined.", declined=True)
        intent = PaymentIntent(f"pi_fake_{next(self._ids)}", status, amount, currency)
        self.intents[intent.id] = status
        return intent

    async def create_intent(self, amount_cents: int, currency: str, booking_id: str,
                            idempotency_key: str) -> PaymentIntent:
        return await self._once("create", idempotency_key,
                                lambda: self._new(amount_cents, currency, "requires_capture"))

    async def charge(self, amount_cents: int, currency: str, metadata: dict[str, str],
                     idempotency_key: str) -> PaymentIntent:
        return await self._once("charge", idempotency_key,
                                lambda: self._new(amount_cents, currency, "succeeded"))

    def _move(self, intent_id: str, frm: str, to: str) -> PaymentIntent:
        if self.intents.get(intent_id) != frm:
            raise StripeError(f"HTTP 400: intent {intent_id} is {self.intents.get(intent_id)}")
        self.intents[intent_id] = to
        return PaymentIntent(intent_id, to, 0, "")

    async def capture(self, intent_id: str, idempotency_key: str) -> PaymentIntent:
        return await self._once("capture", idempotency_key,
                                lambda: self._move(intent_id, "requires_capture", "succeeded"))

    async def cancel(self, intent_id: str, idempotency_key: str) -> PaymentIntent:
        return await self._once("cancel", idempotency_key,
                                lambda: self._move(intent_id, "requires_capture", "canceled"))

    async def retrieve(self, intent_id: str) -> PaymentIntent:
        if self.unreachable:
            self.unreachable -= 1
            raise StripeError("HTTP 503: provider unavailable")
        return PaymentIntent(intent_id, self.intents[intent_id], 0, "")


@dataclass
class Fakes:
    world: World
    db: FakeDatabase
    provider: FakeProvider
    ports: PaymentPorts


def make_fakes(fee_percent: float = 15.0) -> Fakes:
    world = World()
    db = FakeDatabase(world)
    provider = FakeProvider()

    async def emit(conn: World, topic: str, key: str, source: str, type_: str,
                   data: dict) -> None:
        conn.outbox.append((topic, key, type_, dict(data)))

    ports = PaymentPorts(db=db, payments=FakePaymentStore(), bookings=FakeBookings(),
                         emit=emit, provider=lambda: provider, fee_percent=lambda: fee_percent,
                         now=lambda: NOW)
    return Fakes(world, db, provider, ports)


# ------------------------------------------------------------------ bookings


class FakeBookingStore(FakeBookings):
    """The subset of stores/booking.py the booking use cases call, over a World: optimistic
    updates like the real one (a stale version → BookingConflict or InvalidTransition)."""

    def __init__(self) -> None:
        self.history: list[tuple[str, str | None, str]] = []
        self.decline_reasons: list[tuple[str, str, str]] = []
        self.photos: list[Row] = []

    async def insert_booking(self, conn: World, values: dict[str, Any], pickup_lat: float,
                             pickup_lng: float) -> Row | None:
        row = {"id": _new_id(), "runner_id": None, "version": 1, "disputed_at": None,
               "dispute_resolved_at": None, "delivered_at": None, **values}
        conn.bookings[row["id"]] = row
        return dict(row)

    async def add_history(self, conn: World, booking_id: str, from_status: str | None,
                          to_status: str, changed_by: str | None, reason: str | None) -> None:
        self.history.append((booking_id, from_status, to_status))

    async def emit_all(self, conn: World, events: list[tuple[str, str, str, dict[str, Any]]]
                       ) -> None:
        conn.outbox.extend((topic, key, type_, dict(data)) for topic, key, type_, data in events)

    async def commit_transition(self, conn: World, booking: Row, change: Any,
                                changed_by: str | None) -> Row:
        from domain.booking import InvalidTransition
        from stores.booking import BookingConflict

        row = conn.bookings[booking["id"]]
        if row["version"] != booking["version"]:
            if row["status"] != booking["status"]:
                raise InvalidTransition(row["status"], change.target)
            raise BookingConflict()
        row.update(change.changes, status=change.target, version=row["version"] + 1)
        await self.add_history(conn, row["id"], booking["status"], change.target, changed_by,
                               change.reason)
        await self.emit_all(conn, change.events)
        return dict(row)

    async def add_decline_reason(self, conn: World, booking_id: str, runner_id: str,
                                 reason: str) -> None:
        self.decline_reasons.append((booking_id, runner_id, reason))

    async def add_photo(self, conn: World, booking_id: str, runner_id: str, photo_type: str,
                        photo_url: str, caption: str) -> Row:
        row = {"id": _new_id(), "booking_id": booking_id, "runner_id": runner_id,
               "photo_type": photo_type, "photo_url": photo_url, "caption": caption}
        self.photos.append(row)
        return dict(row)

    async def list_photos(self, conn: World, booking_id: str) -> list[Row]:
        return [dict(p) for p in self.photos if p["booking_id"] == booking_id]


def booking_ports(f: Fakes, window_hours: float = 24.0) -> Any:
    """Booking use cases' ports over the same World as the payment fakes (`f`)."""
    from services.ports import BookingPorts

    return BookingPorts(db=f.db, bookings=FakeBookingStore(), payments=f.ports.payments,
                        now=lambda: NOW, window_hours=lambda: window_hours)
