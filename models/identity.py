"""Tables of the identity domain: users, sessions, password resets, runner applications,
referrals.

Secrets are never stored in clear: refresh tokens and password-reset tokens are kept as
SHA-256 hashes, so a database dump cannot be replayed against the API.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from models.base import metadata, timestamps, uuid_col, uuid_pk, version_col


def _user_fk(name: str, **kw) -> Column:
    return Column(name, UUID(as_uuid=False), ForeignKey("users.id", ondelete="CASCADE"),
                  nullable=False, **kw)


users = Table(
    "users", metadata,
    uuid_pk(),
    # Stored lower-case; uniqueness is on lower(email) so case never creates a second account.
    Column("email", String(255), nullable=False),
    Column("phone", String(20), nullable=False, server_default=""),
    Column("password_hash", String(255), nullable=False),
    Column("full_name", String(255), nullable=False),
    Column("role", String(20), nullable=False),
    Column("is_verified", Boolean, nullable=False, server_default="false"),
    Column("is_banned", Boolean, nullable=False, server_default="false"),
    Column("banned_at", DateTime(timezone=True)),
    Column("avatar_url", Text, nullable=False, server_default=""),
    version_col(),
    *timestamps(),
    Index("ix_users_role", "role"),
    Index("ix_users_created_at", "created_at"),
)

refresh_tokens = Table(
    "refresh_tokens", metadata,
    uuid_pk(),
    _user_fk("user_id", index=True),
    Column("jti", String(64), nullable=False, unique=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("revoked", Boolean, nullable=False, server_default="false"),
    Column("revoked_at", DateTime(timezone=True)),
    # The jti of the token that replaced this one on rotation (audit trail of a session).
    Column("replaced_by", String(64)),
    # The session (login) the token belongs to: rotation keeps it, so it names the family.
    Column("session_id", String(64), index=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

password_resets = Table(
    "password_resets", metadata,
    uuid_pk(),
    _user_fk("user_id", index=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

runner_applications = Table(
    "runner_applications", metadata,
    uuid_pk(),
    Column("application_id", String(20), nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("phone", Text, nullable=False),
    # Not unique: a repeated IC number is kept for review (no enumeration through the form).
    Column("ic_number", Text, nullable=False, index=True),
    Column("vehicle_type", Text, nullable=False),
    Column("plate_number", Text, nullable=False),
    Column("pet_experience", ARRAY(Text), nullable=False, server_default="{}"),
    Column("comfortable_with_live_pets", Boolean, nullable=False, server_default="false"),
    Column("consent_acknowledged", Boolean, nullable=False),
    Column("status", Text, nullable=False, server_default="pending_review"),
    Column("submitted_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("reviewed_at", DateTime(timezone=True)),
    uuid_col("reviewer_user_id"),
)

# One counter per UTC year: the `KR-<year>-<n>` numbers are allocated under a row lock, so two
# concurrent applications never get the same display id.
runner_application_counters = Table(
    "runner_application_counters", metadata,
    Column("year", Integer, primary_key=True),
    Column("last_number", Integer, nullable=False),
)

user_referral_codes = Table(
    "user_referral_codes", metadata,
    uuid_pk(),
    _user_fk("user_id", unique=True),
    Column("code", String(50), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

referrals = Table(
    "referrals", metadata,
    uuid_pk(),
    _user_fk("referrer_id", index=True),
    _user_fk("referee_id", unique=True),
    Column("referral_code", String(50), nullable=False),
    Column("reward_amount_cents", BigInteger, nullable=False, server_default="0"),
    Column("referrer_credited", Boolean, nullable=False, server_default="false"),
    Column("referee_credited", Boolean, nullable=False, server_default="false"),
    Column("credited_at", DateTime(timezone=True)),
    uuid_col("credited_booking_id"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
