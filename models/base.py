"""The shared SQLAlchemy MetaData and column helpers used by every domain's tables."""

from __future__ import annotations

from geoalchemy2 import Geography
from sqlalchemy import BigInteger, Column, DateTime, MetaData, func, text
from sqlalchemy.dialects.postgresql import UUID

metadata = MetaData()


def uuid_pk() -> Column:
    return Column("id", UUID(as_uuid=False), primary_key=True,
                  server_default=text("uuid_generate_v4()"))


def uuid_col(name: str, **kw) -> Column:
    return Column(name, UUID(as_uuid=False), **kw)


def timestamps() -> list[Column]:
    return [
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ]


def version_col() -> Column:
    return Column("version", BigInteger, nullable=False, server_default=text("1"))


def point_col(name: str = "location", **kw) -> Column:
    """A `geography(Point,4326)` column (GIST index created by the migration)."""
    return Column(name, Geography(geometry_type="POINT", srid=4326, spatial_index=False), **kw)
