"""Review domain: reviews (one per booking and reviewer).

Revision ID: 0008_review
Revises: 0001_core
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0008_review"
down_revision = "0001_core"
branch_labels = ("review",)
depends_on = None

U = UUID(as_uuid=False)


def _ts(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("id", U, primary_key=True, server_default=sa.text("uuid_generate_v4()")),
        sa.Column("booking_id", U, nullable=False, index=True),
        sa.Column("reviewer_id", U, nullable=False, index=True),
        sa.Column("reviewee_id", U, nullable=False),
        sa.Column("reviewee_type", sa.String(20), nullable=False),
        sa.Column("rating", sa.Integer, nullable=False),
        sa.Column("comment", sa.Text, nullable=False, server_default=""),
        sa.Column("photo_urls", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        _ts("created_at"), _ts("updated_at"),
        sa.CheckConstraint("reviewee_type IN ('runner', 'shop', 'owner')",
                           name="ck_reviews_reviewee_type"),
        sa.CheckConstraint("rating BETWEEN 1 AND 5", name="ck_reviews_rating"),
        sa.CheckConstraint("reviewer_id <> reviewee_id", name="ck_reviews_not_self"),
        sa.UniqueConstraint("booking_id", "reviewer_id", name="uq_reviews_booking_reviewer"),
    )
    op.create_index("ix_reviews_reviewee", "reviews", ["reviewee_id", "reviewee_type"])


def downgrade() -> None:
    op.drop_table("reviews")
