"""Runner domain: runner profiles, crate specs, live locations (PostGIS), pet shops.

Revision ID: 0002_runner
Revises: 0001_core
"""

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geography
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0002_runner"
down_revision = "0001_core"
branch_labels = ("runner",)
depends_on = None


def _ts(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def _pk() -> sa.Column:
    return sa.Column("id", UUID(as_uuid=False), primary_key=True,
                     server_default=sa.text("uuid_generate_v4()"))


def upgrade() -> None:
    op.create_table(
        "runners", _pk(),
        sa.Column("user_id", UUID(as_uuid=False), nullable=False, unique=True),
        sa.Column("full_name", sa.String(255), nullable=False),
        sa.Column("phone", sa.String(20), nullable=False),
        sa.Column("vehicle_type", sa.String(20), nullable=False),
        sa.Column("vehicle_plate", sa.String(20), nullable=False),
        sa.Column("vehicle_model", sa.String(100), nullable=False),
        sa.Column("vehicle_year", sa.Integer, nullable=False),
        sa.Column("air_conditioned", sa.Boolean, nullable=False, server_default="false"),
        sa.Column("session_status", sa.String(20), nullable=False, server_default="inactive"),
        sa.Column("rating", sa.Numeric(3, 2), nullable=False, server_default="0"),
        sa.Column("total_trips", sa.Integer, nullable=False, server_default="0"),
        sa.Column("completion_rate", sa.Numeric(3, 2), nullable=False, server_default="1.0"),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="1"),
        _ts("created_at"), _ts("updated_at"),
    )
    op.create_index("ix_runners_session_status", "runners", ["session_status"])
    op.create_table(
        "crate_specs", _pk(),
        sa.Column("runner_id", UUID(as_uuid=False),
                  sa.ForeignKey("runners.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("size", sa.String(20), nullable=False),
        sa.Column("pet_types", JSONB, nullable=False, server_default="[]"),
        sa.Column("max_weight_kg", sa.Numeric(6, 2), nullable=False),
        sa.Column("width_cm", sa.Numeric(6, 2)),
        sa.Column("height_cm", sa.Numeric(6, 2)),
        sa.Column("depth_cm", sa.Numeric(6, 2)),
        sa.Column("ventilated", sa.Boolean, nullable=False, server_default="false"),
        sa.Column("temperature_controlled", sa.Boolean, nullable=False, server_default="false"),
        _ts("created_at"),
    )
    op.create_table(
        "runner_locations",
        sa.Column("runner_id", UUID(as_uuid=False), primary_key=True),
        sa.Column("location", Geography("POINT", srid=4326, spatial_index=False), nullable=False),
        sa.Column("speed_kmh", sa.Float, nullable=False, server_default="0"),
        sa.Column("heading_degrees", sa.Float, nullable=False, server_default="0"),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        _ts("updated_at"),
    )
    op.create_index("ix_runner_locations_location", "runner_locations", ["location"],
                    postgresql_using="gist")
    op.create_table(
        "pet_shops", _pk(),
        sa.Column("owner_id", UUID(as_uuid=False), index=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("address", sa.Text, nullable=False),
        sa.Column("location", Geography("POINT", srid=4326, spatial_index=False), nullable=False),
        sa.Column("phone", sa.String(20), nullable=False, server_default=""),
        sa.Column("email", sa.String(255), nullable=False, server_default=""),
        sa.Column("category", sa.String(20), nullable=False, index=True),
        sa.Column("services", JSONB, nullable=False, server_default="[]"),
        sa.Column("rating", sa.Numeric(3, 2), nullable=False, server_default="0"),
        sa.Column("image_url", sa.Text, nullable=False, server_default=""),
        sa.Column("opening_hours", sa.String(100), nullable=False, server_default=""),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        _ts("created_at"), _ts("updated_at"),
    )
    op.create_index("ix_pet_shops_location", "pet_shops", ["location"], postgresql_using="gist")


def downgrade() -> None:
    op.drop_table("pet_shops")
    op.drop_table("runner_locations")
    op.drop_table("crate_specs")
    op.drop_table("runners")
