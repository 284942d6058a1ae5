"""The ports the use cases talk through, and their production adapters.

A port is the narrow interface a use case needs from the outside: transactions, the payment
rows (`stores/payment.py`), the bookings it reads (`stores/booking.py`), the outbox, the payment
provider (`core/stripe.py`). Production wires the real modules in (`payment_ports()`); the unit
tests wire in-memory fakes of the same shape (`tests/unit/fakes.py`), so the use cases run there
with no broker and no database.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Protocol

Row = dict[str, Any]
Conn = Any  # whatever the port's transaction yields; only the matching store understands it


class Transactions(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[Conn]: ...


class Intent(Protocol):
    id: str
    status: str


class PaymentProvider(Protocol):
    """PaymentIntents with idempotency keys (core/stripe.py)."""

    async def create_intent(self, amount_cents: int, currency: str, booking_id: str,
                            idempotency_key: str) -> Intent: ...

    async def charge(self, amount_cents: int, currency: str, metadata: dict[str, str],
                     idempotency_key: str) -> Intent: ...

    async def capture(self, intent_id: str, idempotency_key: str) -> Intent: ...

    async def cancel(self, intent_id: str, idempotency_key: str) -> Intent: ...

    async def retrieve(self, intent_id: str) -> Intent: ...


class Outbox(Protocol):
    async def __call__(self, conn: Conn, topic: str, key: str, source: str, type_: str,
                       data: dict) -> Any: ...


class BookingReader(Protocol):
    async def get_booking(self, conn: Conn, booking_id: str, *,
                          for_update: bool = False) -> Row | None: ...


class PaymentStore(Protocol):
    """The payment rows (stores/payment.py); every call runs inside the caller's transaction."""

    async def get_payment(self, conn: Conn, payment_id: str, *,
                          for_update: bool = False) -> Row | None: ...

    async def get_payment_by_booking(self, conn: Conn, booking_id: str, *,
                                     for_update: bool = False,
                                     skip_locked: bool = False) -> Row | None: ...

    async def insert_payment(self, conn: Conn, **values: Any) -> Row: ...

    async def held_booking_payments(self, conn: Conn, limit: int = 1000) -> list[Row]: ...

    async def update_payment(self, conn: Conn, payment: Row, **changes: Any) -> Row | None: ...

    async def get_promo_by_code(self, conn: Conn, code: str, *,
                                for_update: bool = False) -> Row | None: ...

    async def promo_used_by(self, conn: Conn, promo_id: str, user_id: str) -> bool: ...

    async def record_promo_use(self, conn: Conn, promo_id: str, user_id: str, booking_id: str,
                               discount_cents: int) -> None: ...

    async def undo_promo_use(self, conn: Conn, booking_id: str) -> None: ...

    async def insert_promo(self, conn: Conn, **values: Any) -> Row | None: ...

    async def lock_user_subscriptions(self, conn: Conn, user_id: str) -> None: ...

    async def expire_subscriptions(self, conn: Conn, user_id: str) -> None: ...

    async def active_subscription(self, conn: Conn, user_id: str, *,
                                  for_update: bool = False) -> Row | None: ...

    async def pending_subscription(self, conn: Conn, user_id: str) -> Row | None: ...

    async def paid_cancelled_subscription(self, conn: Conn, user_id: str, plan: str, *,
                                          for_update: bool = False) -> Row | None: ...

    async def set_subscription_status(self, conn: Conn, sub_id: str, status: str,
                                      **changes: Any) -> Row | None: ...

    async def subscription_payment(self, conn: Conn, sub_id: str, *,
                                   for_update: bool = False) -> Row | None: ...

    async def insert_subscription(self, conn: Conn, **values: Any) -> Row: ...

    async def cancel_subscription(self, conn: Conn, sub_id: str) -> Row | None: ...

    async def insert_destination(self, conn: Conn, **values: Any) -> Row: ...

    async def destination_of(self, conn: Conn, destination_id: str,
                             runner_id: str) -> Row | None: ...

    async def lock_runner_balance(self, conn: Conn, runner_id: str) -> None: ...

    async def available_balance(self, conn: Conn, runner_id: str) -> int: ...

    async def insert_cash_out(self, conn: Conn, **values: Any) -> Row: ...


class BookingStore(Protocol):
    """The booking rows (stores/booking.py); every call runs inside the caller's transaction."""

    async def get_booking(self, conn: Conn, booking_id: str, *,
                          for_update: bool = False) -> Row | None: ...

    async def insert_booking(self, conn: Conn, values: dict[str, Any], pickup_lat: float,
                             pickup_lng: float) -> Row | None: ...

    async def add_history(self, conn: Conn, booking_id: str, from_status: str | None,
                          to_status: str, changed_by: str | None, reason: str | None) -> None: ...

    async def emit_all(self, conn: Conn, events: list[tuple[str, str, str, dict[str, Any]]]
                       ) -> None: ...

    async def commit_transition(self, conn: Conn, booking: Row, change: Any,
                                changed_by: str | None) -> Row: ...

    async def add_decline_reason(self, conn: Conn, booking_id: str, runner_id: str,
                                 reason: str) -> None: ...

    async def add_photo(self, conn: Conn, booking_id: str, runner_id: str, photo_type: str,
                        photo_url: str, caption: str) -> Row: ...

    async def list_photos(self, conn: Conn, booking_id: str) -> list[Row]: ...


class EscrowReader(Protocol):
    async def get_payment_by_booking(self, conn: Conn, booking_id: str, *,
                                     for_update: bool = False,
                                     skip_locked: bool = False) -> Row | None: ...


@dataclass(frozen=True)
class BookingPorts:
    db: Transactions
    bookings: BookingStore
    payments: EscrowReader
    now: Callable[[], datetime]
    window_hours: Callable[[], float]


@lru_cache(maxsize=1)
def booking_ports() -> BookingPorts:
    """The production wiring of the booking use cases."""
    from datetime import UTC

    from core.config import settings
    from core.db import db
    from stores import booking, payment

    return BookingPorts(db=db, bookings=booking, payments=payment,
                        now=lambda: datetime.now(UTC),
                        window_hours=lambda: settings().auto_confirm_hours)


@dataclass(frozen=True)
class PaymentPorts:
    db: Transactions
    payments: PaymentStore
    bookings: BookingReader
    emit: Outbox
    provider: Callable[[], PaymentProvider]
    fee_percent: Callable[[], float]
    now: Callable[[], datetime]


@lru_cache(maxsize=1)
def payment_ports() -> PaymentPorts:
    """The production wiring (imported lazily: the adapters read settings when first used)."""
    from datetime import UTC

    from core import outbox
    from core.config import settings
    from core.db import db
    from core.stripe import stripe
    from stores import booking, payment

    return PaymentPorts(db=db, payments=payment, bookings=booking, emit=outbox.emit,
                        provider=stripe, fee_percent=lambda: settings().platform_fee_percent,
                        now=lambda: datetime.now(UTC))
