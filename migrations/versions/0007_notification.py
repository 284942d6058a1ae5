"""Notification domain: notifications, per-channel deliveries, preferences.

Revision ID: 0007_notification
Revises: 0001_core
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0007_notification"
down_revision = "0001_core"
branch_labels = ("notification",)
depends_on = None

U = UUID(as_uuid=False)


def _ts(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def _pk() -> sa.Column:
    return sa.Column("id", U, primary_key=True, server_default=sa.text("uuid_generate_v4()"))


def upgrade() -> None:
    op.create_table(
        "notifications", _pk(),
        sa.Column("user_id", U, nullable=False),
        sa.Column("booking_id", U),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(50), nullable=False),
        sa.Column("recipient_role", sa.String(20), nullable=False),
        sa.Column("title", sa.String(255), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("channels_sent", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("channels_failed", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("status", sa.String(20), nullable=False, server_default="pending"),
        sa.Column("is_read", sa.Boolean, nullable=False, server_default="false"),
        sa.Column("read_at", sa.DateTime(timezone=True)),
        sa.Column("metadata", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("fcm_sent_at", sa.DateTime(timezone=True)),
        sa.Column("sms_sent_at", sa.DateTime(timezone=True)),
        sa.Column("email_sent_at", sa.DateTime(timezone=True)),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="1"),
        _ts("created_at"), _ts("updated_at"),
        sa.UniqueConstraint("event_id", "user_id", name="uq_notifications_event_user"),
    )
    op.create_index("ix_notifications_user_created", "notifications",
                    ["user_id", sa.text("created_at DESC")])
    op.create_index("ix_notifications_booking", "notifications", ["booking_id"])
    op.create_index("ix_notifications_unread", "notifications", ["user_id"],
                    postgresql_where=sa.text("is_read = false"))
    op.create_table(
        "notification_deliveries",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("notification_id", U,
                  sa.ForeignKey("notifications.id", ondelete="CASCADE"), nullable=False),
        sa.Column("channel", sa.String(10), nullable=False),
        sa.Column("status", sa.String(10), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("last_error", sa.Text),
        sa.Column("provider_id", sa.String(255)),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        _ts("created_at"), _ts("updated_at"),
        sa.UniqueConstraint("notification_id", "channel", name="uq_deliveries_notification_channel"),
        sa.CheckConstraint("channel IN ('push', 'sms', 'email')", name="ck_deliveries_channel"),
        sa.CheckConstraint("status IN ('pending', 'deferred', 'sent', 'failed')",
                           name="ck_deliveries_status"),
    )
    op.create_index("ix_deliveries_due", "notification_deliveries", ["next_attempt_at"],
                    postgresql_where=sa.text("status IN ('pending', 'deferred')"))
    op.create_table(
        "notification_preferences", _pk(),
        sa.Column("user_id", U, nullable=False, unique=True),
        sa.Column("enable_push", sa.Boolean, nullable=False, server_default="true"),
        sa.Column("enable_sms", sa.Boolean, nullable=False, server_default="true"),
        sa.Column("enable_email", sa.Boolean, nullable=False, server_default="true"),
        sa.Column("fcm_token", sa.String(255)),
        sa.Column("phone_number", sa.String(20)),
        sa.Column("email", sa.String(255)),
        sa.Column("quiet_hours_start", sa.Time),
        sa.Column("quiet_hours_end", sa.Time),
        sa.Column("timezone", sa.String(64), nullable=False, server_default="Asia/Kuala_Lumpur"),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="1"),
        _ts("created_at"), _ts("updated_at"),
    )


def downgrade() -> None:
    op.drop_table("notification_preferences")
    op.drop_table("notification_deliveries")
    op.drop_table("notifications")
