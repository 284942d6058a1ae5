"""Booking: the owner's dispute of a delivery (money waits for the owner).

Revision ID: 0010_money_waits
Revises: 0003_booking
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_money_waits"
down_revision = "0003_booking"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A dispute freezes a delivered booking's escrow until an admin resolves it; the columns
    # are on the booking so every read of the row (and its optimistic version) sees it.
    op.add_column("bookings", sa.Column("disputed_at", sa.DateTime(timezone=True)))
    op.add_column("bookings", sa.Column("dispute_reason", sa.String(1000)))
    op.add_column("bookings", sa.Column("dispute_resolved_at", sa.DateTime(timezone=True)))
    op.add_column("bookings", sa.Column("dispute_outcome", sa.String(20)))
    op.add_column("bookings", sa.Column("dispute_note", sa.String(1000)))
    op.add_column("bookings", sa.Column("completed_by", sa.String(20)))


def downgrade() -> None:
    for name in ("completed_by", "dispute_note", "dispute_outcome", "dispute_resolved_at",
                 "dispute_reason", "disputed_at"):
        op.drop_column("bookings", name)
