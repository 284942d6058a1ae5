"""Tables of the payment domain: payments (escrow), promos and their usages, subscriptions,
payout destinations and cash-out requests."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)

from models.base import metadata, timestamps, uuid_col, uuid_pk, version_col

payments = Table(
    "payments", metadata,
    uuid_pk(),
    # kind 'booking': the escrow of one booking; kind 'subscription': the charge of one
    # subscription (no booking). Migration 0014.
    Column("kind", String(20), nullable=False, server_default="booking"),
    uuid_col("booking_id", unique=True),
    uuid_col("subscription_id", unique=True),
    uuid_col("owner_id", nullable=False, index=True),
    uuid_col("runner_id"),
    Column("escrow_status", String(20), nullable=False, server_default="pending", index=True),
    Column("amount_cents", BigInteger, nullable=False),
    Column("platform_fee_cents", BigInteger, nullable=False),
    Column("runner_payout_cents", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False, server_default="MYR"),
    Column("payment_method", String(50)),
    Column("stripe_payment_id", String(255)),
    Column("escrow_held_at", DateTime(timezone=True)),
    Column("escrow_released_at", DateTime(timezone=True)),
    Column("refunded_at", DateTime(timezone=True)),
    Column("refund_reason", Text),
    # Not in the DTO: what the booking cost before discounts, and who to email the receipt to.
    Column("booking_amount_cents", BigInteger, nullable=False),
    Column("discount_cents", BigInteger, nullable=False, server_default="0"),
    Column("customer_email", String(255), nullable=False, server_default=""),
    version_col(),
    *timestamps(),
)

promos = Table(
    "promos", metadata,
    uuid_pk(),
    Column("code", String(50), nullable=False, unique=True),
    Column("discount_type", String(20), nullable=False),
    Column("discount_value", BigInteger, nullable=False),
    Column("min_amount_cents", BigInteger, nullable=False, server_default="0"),
    Column("max_discount_cents", BigInteger, nullable=False, server_default="0"),
    Column("max_uses", BigInteger, nullable=False, server_default="0"),
    Column("current_uses", BigInteger, nullable=False, server_default="0"),
    Column("valid_from", DateTime(timezone=True), nullable=False),
    Column("valid_until", DateTime(timezone=True), nullable=False),
    uuid_col("created_by"),
    *timestamps(),
)

promo_usages = Table(
    "promo_usages", metadata,
    uuid_pk(),
    uuid_col("promo_id", nullable=False, index=True),
    uuid_col("user_id", nullable=False, index=True),
    uuid_col("booking_id", nullable=False),
    Column("discount_cents", BigInteger, nullable=False),
    Column("used_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # One use per user and promo, enforced by the database against concurrent initiates.
    UniqueConstraint("promo_id", "user_id", name="uq_promo_usages_promo_user"),
)

subscriptions = Table(
    "subscriptions", metadata,
    uuid_pk(),
    uuid_col("user_id", nullable=False, index=True),
    Column("plan", String(20), nullable=False),
    Column("price_cents", BigInteger, nullable=False),
    Column("discount_percent", BigInteger, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("status", String(20), nullable=False, server_default="active"),
    Column("auto_renew", Boolean, nullable=False, server_default=text("true")),
    *timestamps(),
    # At most one row in status 'active' per user (expired ones are flipped before inserting).
    Index("uq_subscriptions_one_active", "user_id", unique=True,
          postgresql_where=text("status = 'active'")),
)

payout_destinations = Table(
    "payout_destinations", metadata,
    uuid_pk(),
    uuid_col("runner_id", nullable=False, index=True),
    Column("bank_name", String(100), nullable=False),
    Column("account_number", String(34), nullable=False),
    Column("account_holder", String(255), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

cash_out_requests = Table(
    "cash_out_requests", metadata,
    uuid_pk(),
    uuid_col("runner_id", nullable=False, index=True),
    Column("amount_myr_cents", BigInteger, nullable=False),
    Column("fee_myr_cents", BigInteger, nullable=False, server_default="50"),
    uuid_col("destination_id", nullable=False),
    Column("status", String(20), nullable=False, server_default="pending", index=True),
    Column("requested_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("submitted_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
    Column("simulated_rail_id", String(255)),
)
