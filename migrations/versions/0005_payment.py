"""Payment domain: payments (escrow), promos, promo usages, subscriptions, payout destinations,
cash-out requests.

Revision ID: 0005_payment
Revises: 0001_core
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0005_payment"
down_revision = "0001_core"
branch_labels = ("payment",)
depends_on = None

U = UUID(as_uuid=False)


def _ts(name: str, nullable: bool = False) -> sa.Column:
    if nullable:
        return sa.Column(name, sa.DateTime(timezone=True))
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def _pk() -> sa.Column:
    return sa.Column("id", U, primary_key=True, server_default=sa.text("uuid_generate_v4()"))


def upgrade() -> None:
    op.create_table(
        "payments", _pk(),
        sa.Column("booking_id", U, nullable=False, unique=True),
        sa.Column("owner_id", U, nullable=False),
        sa.Column("runner_id", U),
        sa.Column("escrow_status", sa.String(20), nullable=False, server_default="pending"),
        sa.Column("amount_cents", sa.BigInteger, nullable=False),
        sa.Column("platform_fee_cents", sa.BigInteger, nullable=False),
        sa.Column("runner_payout_cents", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False, server_default="MYR"),
        sa.Column("payment_method", sa.String(50)),
        sa.Column("stripe_payment_id", sa.String(255)),
        _ts("escrow_held_at", True), _ts("escrow_released_at", True), _ts("refunded_at", True),
        sa.Column("refund_reason", sa.Text),
        sa.Column("booking_amount_cents", sa.BigInteger, nullable=False),
        sa.Column("discount_cents", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("customer_email", sa.String(255), nullable=False, server_default=""),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="1"),
        _ts("created_at"), _ts("updated_at"),
        sa.CheckConstraint(
            "escrow_status IN ('pending','held','released','refunded','failed')",
            name="ck_payments_escrow_status"),
        sa.CheckConstraint("amount_cents > 0", name="ck_payments_amount_positive"),
    )
    op.create_index("ix_payments_owner_id", "payments", ["owner_id"])
    op.create_index("ix_payments_escrow_status", "payments", ["escrow_status"])
    op.create_index("ix_payments_runner_status", "payments", ["runner_id", "escrow_status"])

    op.create_table(
        "promos", _pk(),
        sa.Column("code", sa.String(50), nullable=False, unique=True),
        sa.Column("discount_type", sa.String(20), nullable=False),
        sa.Column("discount_value", sa.BigInteger, nullable=False),
        sa.Column("min_amount_cents", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("max_discount_cents", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("max_uses", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("current_uses", sa.BigInteger, nullable=False, server_default="0"),
        _ts("valid_from"), _ts("valid_until"),
        sa.Column("created_by", U),
        _ts("created_at"), _ts("updated_at"),
        sa.CheckConstraint("discount_type IN ('percentage','fixed')", name="ck_promos_type"),
    )
    op.create_table(
        "promo_usages", _pk(),
        sa.Column("promo_id", U, sa.ForeignKey("promos.id"), nullable=False, index=True),
        sa.Column("user_id", U, nullable=False, index=True),
        sa.Column("booking_id", U, nullable=False),
        sa.Column("discount_cents", sa.BigInteger, nullable=False),
        _ts("used_at"),
        sa.UniqueConstraint("promo_id", "user_id", name="uq_promo_usages_promo_user"),
    )
    op.create_table(
        "subscriptions", _pk(),
        sa.Column("user_id", U, nullable=False, index=True),
        sa.Column("plan", sa.String(20), nullable=False),
        sa.Column("price_cents", sa.BigInteger, nullable=False),
        sa.Column("discount_percent", sa.BigInteger, nullable=False),
        _ts("started_at"), _ts("expires_at"),
        sa.Column("status", sa.String(20), nullable=False, server_default="active"),
        sa.Column("auto_renew", sa.Boolean, nullable=False, server_default=sa.text("true")),
        _ts("created_at"), _ts("updated_at"),
        sa.CheckConstraint("status IN ('active','cancelled','expired')",
                           name="ck_subscriptions_status"),
    )
    op.create_index("uq_subscriptions_one_active", "subscriptions", ["user_id"], unique=True,
                    postgresql_where=sa.text("status = 'active'"))
    op.create_table(
        "payout_destinations", _pk(),
        sa.Column("runner_id", U, nullable=False, index=True),
        sa.Column("bank_name", sa.String(100), nullable=False),
        sa.Column("account_number", sa.String(34), nullable=False),
        sa.Column("account_holder", sa.String(255), nullable=False),
        _ts("created_at"),
    )
    op.create_table(
        "cash_out_requests", _pk(),
        sa.Column("runner_id", U, nullable=False, index=True),
        sa.Column("amount_myr_cents", sa.BigInteger, nullable=False),
        sa.Column("fee_myr_cents", sa.BigInteger, nullable=False, server_default="50"),
        sa.Column("destination_id", U, sa.ForeignKey("payout_destinations.id"), nullable=False),
        sa.Column("status", sa.String(20), nullable=False, server_default="pending", index=True),
        _ts("requested_at"), _ts("submitted_at", True), _ts("completed_at", True),
        sa.Column("simulated_rail_id", sa.String(255)),
        sa.CheckConstraint("amount_myr_cents > 0", name="ck_cash_out_amount_positive"),
        sa.CheckConstraint("fee_myr_cents >= 0", name="ck_cash_out_fee_non_negative"),
        sa.CheckConstraint("status IN ('pending','processing','completed','failed')",
                           name="ck_cash_out_status"),
    )


def downgrade() -> None:
    for name in ("cash_out_requests", "payout_destinations", "subscriptions", "promo_usages",
                 "promos", "payments"):
        op.drop_table(name)
