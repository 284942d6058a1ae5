"""Pure payment rules: the escrow state machine, the platform fee, promo validity and
discounts (reference §3.9), subscription plans (§3.10) and cash-out arithmetic. No I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any

PENDING, HELD, RELEASED, REFUNDED, FAILED = "pending", "held", "released", "refunded", "failed"
ESCROW_STATUSES = (PENDING, HELD, RELEASED, REFUNDED, FAILED)
TERMINAL = frozenset({RELEASED, REFUNDED, FAILED})
_MOVES = {(PENDING, HELD), (HELD, RELEASED), (HELD, REFUNDED)}

# What a payment pays for: a booking's escrow, or a subscription charged up front.
BOOKING_KIND, SUBSCRIPTION_KIND = "booking", "subscription"

# A booking counts as paid while its escrow holds the owner's money or has released it to the
# runner (a completed booking's release follows `booking.completed`, so `held` is "on its way");
# refunded, failed or no payment at all is unpaid (referral rewards and reviews need paid).
PAID_STATUSES = (HELD, RELEASED)

# Bookings in these states can still be paid for (the owner pays before delivery).
PAYABLE_BOOKING_STATUSES = ("requested", "accepted")


class InvalidTransition(Exception):
    """An escrow move the state machine does not allow (→ 422 on the wire)."""

    def __init__(self, current: str, target: str) -> None:
        super().__init__(f"cannot transition from '{current}' to '{target}'")
        self.current = current
        self.target = target


def can_move(current: str, target: str) -> bool:
    """HoldEscrow pending→held, ReleaseToRunner held→released, Refund held→refunded,
    Fail any non-terminal→failed."""
    if target == FAILED:
        return current not in TERMINAL
    return (current, target) in _MOVES


def check_move(current: str, target: str) -> None:
    if not can_move(current, target):
        raise InvalidTransition(current, target)


# ------------------------------------------------------------------ fee

def platform_fee(amount_cents: int, percent: float) -> int:
    """trunc(amount × percent / 100), computed exactly (no float rounding surprises)."""
    return math.trunc(Fraction(amount_cents) * Fraction(str(percent)) / 100)


def split_amount(amount_cents: int, percent: float) -> tuple[int, int]:
    """(platform_fee_cents, runner_payout_cents); e.g. 150000 at 15 % → (22500, 127500)."""
    fee = platform_fee(amount_cents, percent)
    return fee, amount_cents - fee


# ------------------------------------------------------------------ promos

PERCENTAGE, FIXED = "percentage", "fixed"


def normalise_code(code: str) -> str:
    """Codes are stored upper-cased and trimmed; lookups normalise the same way."""
    return code.strip().upper()


@dataclass(frozen=True)
class PromoCheck:
    valid: bool
    discount_cents: int = 0
    message: str = ""


def promo_is_live(promo: dict[str, Any], now: datetime) -> bool:
    """Within its validity window (exclusive bounds) and not used up (max_uses 0 = unlimited)."""
    return (promo["valid_from"] < now < promo["valid_until"]
            and (promo["max_uses"] == 0 or promo["current_uses"] < promo["max_uses"]))


def promo_discount(promo: dict[str, Any], total_cents: int) -> int:
    """The discount on `total_cents` (caller has checked the minimum): percentage uses integer
    division, then caps at max_discount_cents (if > 0) and at the total."""
    if promo["discount_type"] == PERCENTAGE:
        discount = total_cents * promo["discount_value"] // 100
    else:
        discount = promo["discount_value"]
    if promo["max_discount_cents"] > 0:
        discount = min(discount, promo["max_discount_cents"])
    return max(0, min(discount, total_cents))


def check_promo(promo: dict[str, Any] | None, total_cents: int, now: datetime,
                *, already_used: bool) -> PromoCheck:
    """What `/promos/validate` answers and what initiate applies, with the contract's messages."""
    if promo is None:
        return PromoCheck(False, 0, "promo code not found")
    if not promo_is_live(promo, now):
        return PromoCheck(False, 0, "promo code is expired or fully used")
    if already_used:
        return PromoCheck(False, 0, "you have already used this promo code")
    if total_cents < promo["min_amount_cents"]:
        return PromoCheck(False, 0, f"minimum amount of {promo['min_amount_cents']} cents required")
    return PromoCheck(True, promo_discount(promo, total_cents))


def new_promo_problem(discount_type: str, discount_value: int, valid_from: datetime,
                      valid_until: datetime) -> str | None:
    """Why a promo definition is invalid, or None."""
    if discount_type not in (PERCENTAGE, FIXED):
        return f"invalid discount type: {discount_type}"
    if discount_type == PERCENTAGE and not 1 <= discount_value <= 100:
        return "percentage discount must be between 1 and 100"
    if discount_value <= 0:
        return "discount value must be positive"
    if valid_until < valid_from:
        return "valid_until must not be before valid_from"
    return None


# ------------------------------------------------------------------ subscriptions

PLANS: dict[str, dict[str, Any]] = {
    "basic": {"plan": "basic", "price_cents": 1990, "duration_days": 30, "discount_percent": 5,
              "description": "5% off every booking, valid 30 days"},
    "premium": {"plan": "premium", "price_cents": 4990, "duration_days": 30,
                "discount_percent": 15,
                "description": "15% off every booking + priority runner matching, valid 30 days"},
}


def check_charge(current: str) -> None:
    """A subscription's charge is captured at once: pending → released (the platform has the
    money; nothing is held for anyone), or pending → failed."""
    if current != PENDING:
        raise InvalidTransition(current, RELEASED)


def subscription_is_active(sub: dict[str, Any] | None, now: datetime) -> bool:
    return bool(sub) and sub["status"] == "active" and sub["expires_at"] > now


@dataclass(frozen=True)
class Price:
    booking_cents: int
    promo_discount_cents: int
    subscription_discount_cents: int

    @property
    def discount_cents(self) -> int:
        return self.promo_discount_cents + self.subscription_discount_cents

    @property
    def amount_cents(self) -> int:
        return self.booking_cents - self.discount_cents


def price_payment(booking_cents: int, promo_discount_cents: int, subscription_percent: int) -> Price:
    """The booking's price minus the promo discount, then minus the subscription's percentage of
    what is left (integer division, so the customer never pays a fraction of a cent more)."""
    after_promo = booking_cents - promo_discount_cents
    return Price(booking_cents, promo_discount_cents, after_promo * subscription_percent // 100)


# ------------------------------------------------------------------ cash-out

CASH_OUT_FEE_CENTS = 50


def cash_out_allowed(amount_cents: int, balance_cents: int) -> bool:
    return amount_cents > 0 and amount_cents + CASH_OUT_FEE_CENTS <= balance_cents


def cash_out_eta_minutes(rail_delay_s: float) -> int:
    """ceil(delay / 1 min): the default 30 s rail answers 1."""
    return math.ceil(rail_delay_s / 60)
