"""Booking domain: bookings (with a PostGIS pickup point), history, declines, pets, photos.

Revision ID: 0003_booking
Revises: 0001_core
"""

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geography
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0003_booking"
down_revision = "0001_core"
branch_labels = ("booking",)
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
        "bookings", _pk(),
        sa.Column("booking_number", sa.String(20), nullable=False, unique=True),
        sa.Column("owner_id", U, nullable=False),
        sa.Column("runner_id", U),
        sa.Column("status", sa.String(30), nullable=False, server_default="requested"),
        sa.Column("pet_spec", JSONB, nullable=False),
        sa.Column("crate_requirement", JSONB, nullable=False),
        sa.Column("pickup_address", JSONB, nullable=False),
        sa.Column("dropoff_address", JSONB, nullable=False),
        sa.Column("pickup_location", Geography("POINT", srid=4326, spatial_index=False),
                  nullable=False),
        sa.Column("route_spec", JSONB),
        sa.Column("estimated_price_cents", sa.BigInteger, nullable=False),
        sa.Column("final_price_cents", sa.BigInteger),
        sa.Column("currency", sa.String(3), nullable=False, server_default="MYR"),
        _ts("scheduled_at", True), _ts("accepted_at", True), _ts("picked_up_at", True),
        _ts("delivered_at", True), _ts("cancelled_at", True),
        sa.Column("cancel_note", sa.String(500)),
        sa.Column("notes", sa.String(1000)),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="1"),
        _ts("created_at"), _ts("updated_at"),
        sa.CheckConstraint(
            "status IN ('requested','accepted','in_progress','delivered','completed','cancelled')",
            name="ck_bookings_status"),
    )
    op.create_index("ix_bookings_owner_status", "bookings", ["owner_id", "status"])
    op.create_index("ix_bookings_runner_status", "bookings", ["runner_id", "status"])
    op.create_index("ix_bookings_status_created", "bookings", ["status", sa.text("created_at DESC")])
    op.create_index("ix_bookings_pickup_location", "bookings", ["pickup_location"],
                    postgresql_using="gist")
    op.create_table(
        "booking_status_history", _pk(),
        sa.Column("booking_id", U, sa.ForeignKey("bookings.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("from_status", sa.String(30)),
        sa.Column("to_status", sa.String(30), nullable=False),
        sa.Column("changed_by", U),
        sa.Column("reason", sa.String(500)),
        _ts("created_at"),
    )
    op.create_table(
        "booking_decline_reasons", _pk(),
        sa.Column("booking_id", U, sa.ForeignKey("bookings.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("runner_id", U, nullable=False, index=True),
        sa.Column("reason", sa.Text, nullable=False),
        _ts("declined_at"),
    )
    op.create_table(
        "pets", _pk(),
        sa.Column("owner_id", U, nullable=False, index=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("pet_type", sa.String(20), nullable=False),
        sa.Column("breed", sa.String(100), nullable=False, server_default=""),
        sa.Column("weight_kg", sa.Numeric(5, 2), nullable=False, server_default="0"),
        sa.Column("age_months", sa.Integer, nullable=False, server_default="0"),
        sa.Column("allergies", sa.Text, nullable=False, server_default=""),
        sa.Column("special_needs", sa.Text, nullable=False, server_default=""),
        sa.Column("notes", sa.Text, nullable=False, server_default=""),
        sa.Column("photo_url", sa.Text, nullable=False, server_default=""),
        sa.Column("vaccination_status", sa.String(50), nullable=False, server_default=""),
        sa.Column("status", sa.String(20), nullable=False, server_default="active"),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="1"),
        _ts("created_at"), _ts("updated_at"),
    )
    op.create_table(
        "booking_photos", _pk(),
        sa.Column("booking_id", U, nullable=False, index=True),
        sa.Column("runner_id", U, nullable=False),
        sa.Column("photo_type", sa.String(20), nullable=False),
        sa.Column("photo_url", sa.Text, nullable=False),
        sa.Column("caption", sa.Text, nullable=False, server_default=""),
        _ts("taken_at"), _ts("created_at"),
    )


def downgrade() -> None:
    for name in ("booking_photos", "pets", "booking_decline_reasons", "booking_status_history",
                 "bookings"):
        op.drop_table(name)
