"""Payment: subscriptions are charged through the payment adapter before they apply.

A payment is now of a kind: `booking` (escrow, one per booking, as before) or `subscription`
(a charge captured at once, linked to its subscription, no booking).

Revision ID: 0014_subscription_payments
Revises: 0005_payment
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0014_subscription_payments"
down_revision = "0005_payment"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("payments", sa.Column("kind", sa.String(20), nullable=False,
                                        server_default="booking"))
    op.add_column("payments", sa.Column("subscription_id", UUID(as_uuid=False), unique=True))
    op.alter_column("payments", "booking_id", nullable=True)
    op.create_check_constraint(
        "ck_payments_kind_target", "payments",
        "(kind = 'booking' AND booking_id IS NOT NULL AND subscription_id IS NULL) OR "
        "(kind = 'subscription' AND subscription_id IS NOT NULL AND booking_id IS NULL)")
    # A subscription is `pending` while its charge runs and `failed` if the charge is refused.
    op.drop_constraint("ck_subscriptions_status", "subscriptions", type_="check")
    op.create_check_constraint(
        "ck_subscriptions_status", "subscriptions",
        "status IN ('pending','active','cancelled','expired','failed')")


def downgrade() -> None:
    op.execute("DELETE FROM payments WHERE kind = 'subscription'")
    op.execute("DELETE FROM subscriptions WHERE status IN ('pending', 'failed')")
    op.drop_constraint("ck_subscriptions_status", "subscriptions", type_="check")
    op.create_check_constraint("ck_subscriptions_status", "subscriptions",
                               "status IN ('active','cancelled','expired')")
    op.drop_constraint("ck_payments_kind_target", "payments", type_="check")
    op.alter_column("payments", "booking_id", nullable=False)
    op.drop_column("payments", "subscription_id")
    op.drop_column("payments", "kind")
