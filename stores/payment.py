"""Payment queries shared by the payment views and agents (and readable by other domains)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from core.db import Connection, Row
from domain.payment import HELD, PAID_STATUSES, RELEASED, SUBSCRIPTION_KIND
from models.payment import (
    cash_out_requests,
    payments,
    payout_destinations,
    promo_usages,
    promos,
    subscriptions,
)

# ------------------------------------------------------------------ payments

_DTO_KEYS = ("id", "booking_id", "owner_id", "runner_id", "escrow_status", "amount_cents",
             "platform_fee_cents", "runner_payout_cents", "currency", "payment_method",
             "stripe_payment_id", "escrow_held_at", "escrow_released_at", "refunded_at",
             "refund_reason", "version", "created_at", "updated_at")
_OMIT_EMPTY = ("runner_id", "payment_method", "stripe_payment_id", "escrow_held_at",
               "escrow_released_at", "refunded_at", "refund_reason")


def payment_dto(row: Row) -> dict[str, Any]:
    """PaymentDTO (reference §2.3): optional fields are left out when empty. A subscription's
    charge has no booking: it says `kind: "subscription"` and its `subscription_id` instead of
    a `booking_id` (booking payments keep the contract's shape exactly)."""
    dto = {k: row[k] for k in _DTO_KEYS if not (k in _OMIT_EMPTY and row[k] in (None, ""))}
    if row.get("kind") == SUBSCRIPTION_KIND:
        del dto["booking_id"]
        dto = {"id": dto.pop("id"), "kind": SUBSCRIPTION_KIND,
               "subscription_id": row["subscription_id"], **dto}
    return dto


async def get_payment(conn: Connection, payment_id: str, *, for_update: bool = False) -> Row | None:
    stmt = select(payments).where(payments.c.id == payment_id)
    return await conn.fetch_one(stmt.with_for_update() if for_update else stmt)


async def get_payment_by_booking(conn: Connection, booking_id: str, *, for_update: bool = False,
                                 skip_locked: bool = False) -> Row | None:
    """The booking's payment; with `skip_locked`, None while another transaction holds it."""
    stmt = select(payments).where(payments.c.booking_id == booking_id)
    if for_update:
        stmt = stmt.with_for_update(skip_locked=skip_locked)
    return await conn.fetch_one(stmt)


async def held_booking_payments(conn: Connection, limit: int = 1000) -> list[Row]:
    """Booking payments whose escrow holds money, oldest first."""
    return await conn.fetch_all(
        select(payments).where(payments.c.escrow_status == HELD,
                               payments.c.booking_id.is_not(None))
        .order_by(payments.c.escrow_held_at).limit(limit))


async def booking_paid(conn: Connection, booking_id: str) -> bool:
    """The booking's escrow holds or has released the owner's money (domain.payment)."""
    status = await conn.scalar(select(payments.c.escrow_status)
                               .where(payments.c.booking_id == booking_id))
    return status in PAID_STATUSES


async def insert_payment(conn: Connection, **values: Any) -> Row:
    row = await conn.fetch_one(insert(payments).values(**values).returning(payments))
    assert row is not None
    return row


async def update_payment(conn: Connection, payment: Row, **changes: Any) -> Row | None:
    """Optimistic update (§3.11): bump the version; None if someone else changed the row."""
    stmt = (update(payments)
            .where(payments.c.id == payment["id"], payments.c.version == payment["version"])
            .values(**changes, version=payments.c.version + 1, updated_at=func.now())
            .returning(payments))
    return await conn.fetch_one(stmt)


async def list_payments(conn: Connection, *, page: int, limit: int, owner_id: str | None = None,
                        runner_id: str | None = None, status: str | None = None,
                        subscriber_id: str | None = None) -> tuple[list[Row], int]:
    """Payments newest first. `owner_id` / `runner_id` / `status` narrow the list; with
    `subscriber_id`, that user's subscription charges are listed as well."""
    conds = []
    if owner_id:
        conds.append(payments.c.owner_id == owner_id)
    if runner_id:
        conds.append(payments.c.runner_id == runner_id)
    if status:
        conds.append(payments.c.escrow_status == status)
    where = and_(*conds) if conds else true()
    if subscriber_id:
        own_charges = and_(payments.c.kind == SUBSCRIPTION_KIND,
                           payments.c.owner_id == subscriber_id)
        where = or_(and_(*conds), own_charges) if conds else own_charges
    total = await conn.scalar(select(func.count()).select_from(payments).where(where))
    rows = await conn.fetch_all(
        select(payments).where(where).order_by(payments.c.created_at.desc(), payments.c.id)
        .limit(limit).offset((page - 1) * limit))
    return rows, int(total or 0)


async def payment_stats(conn: Connection) -> dict[str, Any]:
    rows = await conn.fetch_all(
        select(payments.c.escrow_status, func.count().label("n"),
               func.coalesce(func.sum(payments.c.amount_cents), 0).label("cents"))
        .group_by(payments.c.escrow_status))
    by_status = {r["escrow_status"]: int(r["n"]) for r in rows}
    revenue = sum(int(r["cents"]) for r in rows if r["escrow_status"] == "released")
    return {"total_revenue_cents": revenue, "total_payments": sum(by_status.values()),
            "by_status": by_status}


# ------------------------------------------------------------------ promos

PROMO_KEYS = ("id", "code", "discount_type", "discount_value", "min_amount_cents",
              "max_discount_cents", "max_uses", "current_uses", "valid_from", "valid_until",
              "created_at")


def promo_dto(row: Row) -> dict[str, Any]:
    return {k: row[k] for k in PROMO_KEYS}


async def get_promo_by_code(conn: Connection, code: str, *, for_update: bool = False) -> Row | None:
    stmt = select(promos).where(promos.c.code == code)
    return await conn.fetch_one(stmt.with_for_update() if for_update else stmt)


async def insert_promo(conn: Connection, **values: Any) -> Row | None:
    """The new promo, or None if its code is taken."""
    return await conn.fetch_one(pg_insert(promos).values(**values)
                                .on_conflict_do_nothing(index_elements=["code"])
                                .returning(promos))


async def live_promos(conn: Connection, now: datetime) -> list[Row]:
    return await conn.fetch_all(
        select(promos).where(promos.c.valid_from < now, promos.c.valid_until > now,
                             (promos.c.max_uses == 0) | (promos.c.current_uses < promos.c.max_uses))
        .order_by(promos.c.created_at.desc()))


async def promo_used_by(conn: Connection, promo_id: str, user_id: str) -> bool:
    return bool(await conn.scalar(
        select(func.count()).select_from(promo_usages)
        .where(promo_usages.c.promo_id == promo_id, promo_usages.c.user_id == user_id)))


async def record_promo_use(conn: Connection, promo_id: str, user_id: str, booking_id: str,
                           discount_cents: int) -> None:
    await conn.execute(insert(promo_usages).values(
        promo_id=promo_id, user_id=user_id, booking_id=booking_id, discount_cents=discount_cents))
    await conn.execute(update(promos).where(promos.c.id == promo_id)
                       .values(current_uses=promos.c.current_uses + 1, updated_at=func.now()))


async def undo_promo_use(conn: Connection, booking_id: str) -> None:
    """Compensation for a failed payment: give the use back."""
    rows = await conn.fetch_all(promo_usages.delete().where(promo_usages.c.booking_id == booking_id)
                                .returning(promo_usages.c.promo_id))
    for row in rows:
        await conn.execute(update(promos).where(promos.c.id == row["promo_id"])
                           .values(current_uses=promos.c.current_uses - 1, updated_at=func.now()))


# ------------------------------------------------------------------ subscriptions

SUBSCRIPTION_KEYS = ("id", "user_id", "plan", "price_cents", "started_at", "expires_at", "status",
                     "auto_renew", "created_at")


def subscription_dto(row: Row) -> dict[str, Any]:
    return {k: row[k] for k in SUBSCRIPTION_KEYS}


async def lock_user_subscriptions(conn: Connection, user_id: str) -> None:
    """Serialise one user's subscription changes for this transaction."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('subscription:' || %(u)s))",
                       {"u": user_id})


async def expire_subscriptions(conn: Connection, user_id: str) -> None:
    """Flip lapsed 'active' rows to 'expired' (there is no renewal job)."""
    await conn.execute(update(subscriptions)
                       .where(subscriptions.c.user_id == user_id,
                              subscriptions.c.status == "active",
                              subscriptions.c.expires_at <= func.now())
                       .values(status="expired", updated_at=func.now()))


async def active_subscription(conn: Connection, user_id: str, *,
                              for_update: bool = False) -> Row | None:
    stmt = select(subscriptions).where(subscriptions.c.user_id == user_id,
                                       subscriptions.c.status == "active",
                                       subscriptions.c.expires_at > func.now())
    return await conn.fetch_one(stmt.with_for_update() if for_update else stmt)


async def pending_subscription(conn: Connection, user_id: str) -> Row | None:
    """A subscription whose charge is under way (its subscribe request has not answered yet)."""
    return await conn.fetch_one(select(subscriptions).where(
        subscriptions.c.user_id == user_id, subscriptions.c.status == "pending"))


async def paid_cancelled_subscription(conn: Connection, user_id: str, plan: str, *,
                                      for_update: bool = False) -> Row | None:
    """The latest cancelled subscription of `plan` whose paid period is still running and whose
    charge went through: re-subscribing to it reactivates it rather than charging again."""
    charged = select(payments.c.subscription_id).where(
        payments.c.kind == SUBSCRIPTION_KIND, payments.c.escrow_status == RELEASED)
    stmt = (select(subscriptions)
            .where(subscriptions.c.user_id == user_id, subscriptions.c.plan == plan,
                   subscriptions.c.status == "cancelled",
                   subscriptions.c.expires_at > func.now(),
                   subscriptions.c.id.in_(charged))
            .order_by(subscriptions.c.expires_at.desc()).limit(1))
    return await conn.fetch_one(stmt.with_for_update() if for_update else stmt)


async def set_subscription_status(conn: Connection, sub_id: str, status: str,
                                  **changes: Any) -> Row | None:
    return await conn.fetch_one(
        update(subscriptions).where(subscriptions.c.id == sub_id)
        .values(status=status, updated_at=func.now(), **changes)
        .returning(subscriptions))


async def subscription_payment(conn: Connection, sub_id: str, *,
                               for_update: bool = False) -> Row | None:
    stmt = select(payments).where(payments.c.subscription_id == sub_id)
    return await conn.fetch_one(stmt.with_for_update() if for_update else stmt)


async def insert_subscription(conn: Connection, **values: Any) -> Row:
    row = await conn.fetch_one(insert(subscriptions).values(**values).returning(subscriptions))
    assert row is not None
    return row


async def cancel_subscription(conn: Connection, sub_id: str) -> Row | None:
    return await conn.fetch_one(
        update(subscriptions).where(subscriptions.c.id == sub_id)
        .values(status="cancelled", auto_renew=False, updated_at=func.now())
        .returning(subscriptions))


# ------------------------------------------------------------------ payouts

DESTINATION_KEYS = ("id", "runner_id", "bank_name", "account_number", "account_holder",
                    "created_at")


def destination_dto(row: Row) -> dict[str, Any]:
    return {k: row[k] for k in DESTINATION_KEYS}


async def insert_destination(conn: Connection, **values: Any) -> Row:
    row = await conn.fetch_one(insert(payout_destinations).values(**values)
                               .returning(payout_destinations))
    assert row is not None
    return row


async def runner_destinations(conn: Connection, runner_id: str) -> list[Row]:
    return await conn.fetch_all(select(payout_destinations)
                                .where(payout_destinations.c.runner_id == runner_id)
                                .order_by(payout_destinations.c.created_at))


async def destination_of(conn: Connection, destination_id: str, runner_id: str) -> Row | None:
    return await conn.fetch_one(select(payout_destinations).where(
        payout_destinations.c.id == destination_id, payout_destinations.c.runner_id == runner_id))


async def lock_runner_balance(conn: Connection, runner_id: str) -> None:
    """Serialise cash-outs of one runner (balance check + insert) for this transaction."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('cash-out:' || %(r)s))",
                       {"r": runner_id})


async def available_balance(conn: Connection, runner_id: str) -> int:
    """Σ released payouts − Σ(amount + fee) of cash-outs not failed."""
    earned = await conn.scalar(
        select(func.coalesce(func.sum(payments.c.runner_payout_cents), 0))
        .where(payments.c.runner_id == runner_id, payments.c.escrow_status == "released"))
    spent = await conn.scalar(
        select(func.coalesce(func.sum(cash_out_requests.c.amount_myr_cents
                                      + cash_out_requests.c.fee_myr_cents), 0))
        .where(cash_out_requests.c.runner_id == runner_id,
               cash_out_requests.c.status.in_(("pending", "processing", "completed"))))
    return int(earned or 0) - int(spent or 0)


async def insert_cash_out(conn: Connection, **values: Any) -> Row:
    row = await conn.fetch_one(insert(cash_out_requests).values(**values)
                               .returning(cash_out_requests))
    assert row is not None
    return row


async def advance_cash_outs(conn: Connection, rail_delay_s: float, batch: int = 100) -> int:
    """The simulated DuitNow rail: submit pending requests (→ processing with a `DN-` reference)
    and complete those submitted at least `rail_delay_s` ago. Rows are claimed with SKIP LOCKED,
    so every worker may run this at once."""
    submitted = await conn.execute(
        "UPDATE cash_out_requests SET status = 'processing', submitted_at = now(), "
        "simulated_rail_id = 'DN-' || uuid_generate_v4() "
        "WHERE id IN (SELECT id FROM cash_out_requests WHERE status = 'pending' "
        "ORDER BY requested_at LIMIT %(n)s FOR UPDATE SKIP LOCKED)", {"n": batch})
    completed = await conn.execute(
        "UPDATE cash_out_requests SET status = 'completed', completed_at = now() "
        "WHERE id IN (SELECT id FROM cash_out_requests WHERE status = 'processing' "
        "AND submitted_at <= now() - make_interval(secs => %(d)s) "
        "ORDER BY submitted_at LIMIT %(n)s FOR UPDATE SKIP LOCKED)",
        {"n": batch, "d": rail_delay_s})
    return submitted + completed
