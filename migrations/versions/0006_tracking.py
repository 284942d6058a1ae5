"""Tracking domain: trip tracks, waypoints (PostGIS), chat messages, shared trips.

Revision ID: 0006_tracking
Revises: 0001_core
"""

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geography
from sqlalchemy.dialects.postgresql import UUID

revision = "0006_tracking"
down_revision = "0001_core"
branch_labels = ("tracking",)
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
        "trip_tracks", _pk(),
        sa.Column("booking_id", U, nullable=False, unique=True),
        sa.Column("runner_id", U, nullable=False, index=True),
        sa.Column("owner_id", U),
        sa.Column("status", sa.String(20), nullable=False, server_default="active", index=True),
        sa.Column("total_distance_km", sa.Numeric(10, 3), nullable=False, server_default="0"),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        _ts("completed_at", True), _ts("cancelled_at", True),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="1"),
        _ts("created_at"), _ts("updated_at"),
        sa.CheckConstraint("status IN ('active','completed','cancelled')",
                           name="ck_trip_tracks_status"),
    )
    op.create_table(
        "waypoints", _pk(),
        sa.Column("trip_track_id", U, sa.ForeignKey("trip_tracks.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("location", Geography("POINT", srid=4326, spatial_index=False), nullable=False),
        sa.Column("latitude", sa.Float, nullable=False),
        sa.Column("longitude", sa.Float, nullable=False),
        sa.Column("speed_kmh", sa.Float, nullable=False, server_default="0"),
        sa.Column("heading_degrees", sa.Float, nullable=False, server_default="0"),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        _ts("created_at"),
        # Also the (trip_track_id, recorded_at) index the route and the DTO read by.
        sa.UniqueConstraint("trip_track_id", "recorded_at", name="uq_waypoints_track_recorded"),
    )
    op.create_index("ix_waypoints_location", "waypoints", ["location"], postgresql_using="gist")
    op.create_table(
        "chat_messages", _pk(),
        sa.Column("booking_id", U, nullable=False),
        sa.Column("sender_id", U, nullable=False),
        sa.Column("sender_role", sa.String(20), nullable=False),
        sa.Column("message_type", sa.String(20), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        _ts("created_at"),
        sa.CheckConstraint("message_type IN ('text','image','quick_reply')",
                           name="ck_chat_messages_type"),
    )
    op.create_index("ix_chat_messages_booking_created", "chat_messages",
                    ["booking_id", "created_at"])
    op.create_table(
        "shared_trips", _pk(),
        sa.Column("booking_id", U, nullable=False, index=True),
        sa.Column("created_by", U),
        sa.Column("share_token", sa.String(64), nullable=False, unique=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        _ts("created_at"),
    )


def downgrade() -> None:
    for name in ("shared_trips", "chat_messages", "waypoints", "trip_tracks"):
        op.drop_table(name)
