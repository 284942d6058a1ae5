"""Tables of the notification domain: notifications, per-channel deliveries, preferences.

A notification row is stored for every recipient of an event whatever channels they have
(DESIGN item 7); sending happens later, one `notification_deliveries` row per channel, so a
slow or failing channel never blocks storing and each channel's result is recorded.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
    Time,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from models.base import metadata, timestamps, uuid_col, uuid_pk, version_col

notifications = Table(
    "notifications", metadata,
    uuid_pk(),
    uuid_col("user_id", nullable=False),
    uuid_col("booking_id"),
    # The id of the event that caused it: with user_id, unique, so a replay stores nothing new.
    Column("event_id", String(64), nullable=False),
    Column("event_type", String(50), nullable=False),
    Column("recipient_role", String(20), nullable=False),
    Column("title", String(255), nullable=False),
    Column("body", Text, nullable=False),
    Column("channels_sent", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("channels_failed", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("status", String(20), nullable=False, server_default="pending"),
    Column("is_read", Boolean, nullable=False, server_default="false"),
    Column("read_at", DateTime(timezone=True)),
    # Rendered channel variants (push/sms/email) and the template variables.
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("fcm_sent_at", DateTime(timezone=True)),
    Column("sms_sent_at", DateTime(timezone=True)),
    Column("email_sent_at", DateTime(timezone=True)),
    version_col(),
    *timestamps(),
    UniqueConstraint("event_id", "user_id", name="uq_notifications_event_user"),
    Index("ix_notifications_user_created", "user_id", text("created_at DESC")),
    Index("ix_notifications_booking", "booking_id"),
    Index("ix_notifications_unread", "user_id", postgresql_where=text("is_read = false")),
)

notification_deliveries = Table(
    "notification_deliveries", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    uuid_col("notification_id", nullable=False),
    Column("channel", String(10), nullable=False),
    # pending | deferred (quiet hours) | sent | failed
    Column("status", String(10), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_error", Text),
    Column("provider_id", String(255)),
    Column("sent_at", DateTime(timezone=True)),
    *timestamps(),
    UniqueConstraint("notification_id", "channel", name="uq_deliveries_notification_channel"),
    Index("ix_deliveries_due", "next_attempt_at",
          postgresql_where=text("status IN ('pending', 'deferred')")),
)

notification_preferences = Table(
    "notification_preferences", metadata,
    uuid_pk(),
    uuid_col("user_id", nullable=False, unique=True),
    Column("enable_push", Boolean, nullable=False, server_default="true"),
    Column("enable_sms", Boolean, nullable=False, server_default="true"),
    Column("enable_email", Boolean, nullable=False, server_default="true"),
    Column("fcm_token", String(255)),
    Column("phone_number", String(20)),
    Column("email", String(255)),
    Column("quiet_hours_start", Time),
    Column("quiet_hours_end", Time),
    Column("timezone", String(64), nullable=False, server_default="Asia/Kuala_Lumpur"),
    version_col(),
    *timestamps(),
)
