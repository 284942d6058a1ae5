"""Tables of the review domain."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, Index, Integer, String, Table, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB

from models.base import metadata, timestamps, uuid_col, uuid_pk

reviews = Table(
    "reviews", metadata,
    uuid_pk(),
    uuid_col("booking_id", nullable=False, index=True),
    uuid_col("reviewer_id", nullable=False, index=True),
    uuid_col("reviewee_id", nullable=False),
    Column("reviewee_type", String(20), nullable=False),
    Column("rating", Integer, nullable=False),
    Column("comment", Text, nullable=False, server_default=""),
    Column("photo_urls", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    *timestamps(),
    CheckConstraint("reviewee_type IN ('runner', 'shop', 'owner')", name="ck_reviews_reviewee_type"),
    CheckConstraint("rating BETWEEN 1 AND 5", name="ck_reviews_rating"),
    CheckConstraint("reviewer_id <> reviewee_id", name="ck_reviews_not_self"),
    UniqueConstraint("booking_id", "reviewer_id", name="uq_reviews_booking_reviewer"),
    Index("ix_reviews_reviewee", "reviewee_id", "reviewee_type"),
)
