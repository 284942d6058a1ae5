"""Identity domain: users, refresh tokens, password resets, runner applications, referrals.

Revision ID: 0004_identity
Revises: 0001_core
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, UUID

revision = "0004_identity"
down_revision = "0001_core"
branch_labels = ("identity",)
depends_on = None

U = UUID(as_uuid=False)


def _ts(name: str, nullable: bool = False) -> sa.Column:
    if nullable:
        return sa.Column(name, sa.DateTime(timezone=True))
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def _pk() -> sa.Column:
    return sa.Column("id", U, primary_key=True, server_default=sa.text("uuid_generate_v4()"))


def _user_fk(name: str, **kw) -> sa.Column:
    return sa.Column(name, U, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, **kw)


def upgrade() -> None:
    op.create_table(
        "users", _pk(),
        sa.Column("email", sa.String(255), nullable=False),
        sa.Column("phone", sa.String(20), nullable=False, server_default=""),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("full_name", sa.String(255), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("is_verified", sa.Boolean, nullable=False, server_default="false"),
        sa.Column("is_banned", sa.Boolean, nullable=False, server_default="false"),
        _ts("banned_at", True),
        sa.Column("avatar_url", sa.Text, nullable=False, server_default=""),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="1"),
        _ts("created_at"), _ts("updated_at"),
        sa.CheckConstraint("role IN ('owner','runner','admin','shop')", name="ck_users_role"),
        sa.CheckConstraint("email = lower(email)", name="ck_users_email_lower"),
    )
    op.create_index("ux_users_email_lower", "users", [sa.text("lower(email)")], unique=True)
    op.create_index("ix_users_role", "users", ["role"])
    op.create_index("ix_users_created_at", "users", ["created_at"])

    op.create_table(
        "refresh_tokens", _pk(),
        _user_fk("user_id", index=True),
        sa.Column("jti", sa.String(64), nullable=False, unique=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked", sa.Boolean, nullable=False, server_default="false"),
        _ts("revoked_at", True),
        sa.Column("replaced_by", sa.String(64)),
        _ts("created_at"),
    )

    op.create_table(
        "password_resets", _pk(),
        _user_fk("user_id", index=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        _ts("used_at", True),
        _ts("created_at"),
    )

    op.create_table(
        "runner_applications", _pk(),
        sa.Column("application_id", sa.String(20), nullable=False, unique=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("phone", sa.Text, nullable=False),
        sa.Column("ic_number", sa.Text, nullable=False, unique=True),
        sa.Column("vehicle_type", sa.Text, nullable=False),
        sa.Column("plate_number", sa.Text, nullable=False),
        sa.Column("pet_experience", ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("comfortable_with_live_pets", sa.Boolean, nullable=False,
                  server_default="false"),
        sa.Column("consent_acknowledged", sa.Boolean, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="pending_review"),
        _ts("submitted_at"),
        _ts("reviewed_at", True),
        sa.Column("reviewer_user_id", U),
        sa.CheckConstraint("vehicle_type IN ('motorbike','car','bicycle')",
                           name="ck_runner_applications_vehicle_type"),
    )
    op.create_table(
        "runner_application_counters",
        sa.Column("year", sa.Integer, primary_key=True),
        sa.Column("last_number", sa.Integer, nullable=False),
    )

    op.create_table(
        "user_referral_codes", _pk(),
        _user_fk("user_id", unique=True),
        sa.Column("code", sa.String(50), nullable=False, unique=True),
        _ts("created_at"),
    )
    op.create_table(
        "referrals", _pk(),
        _user_fk("referrer_id", index=True),
        _user_fk("referee_id", unique=True),
        sa.Column("referral_code", sa.String(50), nullable=False),
        sa.Column("reward_amount_cents", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("referrer_credited", sa.Boolean, nullable=False, server_default="false"),
        sa.Column("referee_credited", sa.Boolean, nullable=False, server_default="false"),
        _ts("credited_at", True),
        sa.Column("credited_booking_id", U),
        _ts("created_at"),
        sa.CheckConstraint("referrer_id <> referee_id", name="ck_referrals_not_self"),
    )


def downgrade() -> None:
    for name in ("referrals", "user_referral_codes", "runner_application_counters",
                 "runner_applications", "password_resets", "refresh_tokens", "users"):
        op.drop_table(name)
