"""Notification queries shared by the notification views, agent and delivery timer."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert

from core.db import Connection, Row
from models.notification import notification_deliveries, notification_preferences, notifications

DTO_COLUMNS = ("id", "user_id", "booking_id", "event_type", "title", "body", "status", "is_read",
               "channels_sent", "channels_failed", "created_at", "updated_at")


# ---------------------------------------------------------------- notifications

async def insert_notification(conn: Connection, values: dict[str, Any]) -> str | None:
    """Store a notification; None if this event already produced one for this user."""
    stmt = (pg_insert(notifications).values(**values)
            .on_conflict_do_nothing(constraint="uq_notifications_event_user")
            .returning(notifications.c.id))
    return await conn.scalar(stmt)


async def insert_deliveries(conn: Connection, notification_id: str, channels: list[str],
                            status: str, next_attempt_at: datetime | None) -> None:
    for channel in channels:
        values: dict[str, Any] = {"notification_id": notification_id, "channel": channel,
                                  "status": status}
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        await conn.execute(pg_insert(notification_deliveries).values(**values)
                           .on_conflict_do_nothing(constraint="uq_deliveries_notification_channel"))


async def known_booking_number(conn: Connection, booking_id: str) -> str | None:
    """The booking number an earlier notification of this booking was rendered with."""
    return await conn.scalar(
        "SELECT metadata->'vars'->>'booking_number' FROM notifications "
        "WHERE booking_id = %(id)s AND coalesce(metadata->'vars'->>'booking_number', '') <> '' "
        "LIMIT 1", {"id": booking_id})


async def list_for_user(conn: Connection, user_id: str, limit: int, offset: int) -> tuple[list[Row], int]:
    cols = [notifications.c[name] for name in DTO_COLUMNS]
    rows = await conn.fetch_all(
        select(*cols).where(notifications.c.user_id == user_id)
        .order_by(notifications.c.created_at.desc(), notifications.c.id.desc())
        .limit(limit).offset(offset))
    total = await conn.scalar(select(func.count()).select_from(notifications)
                              .where(notifications.c.user_id == user_id))
    return rows, int(total or 0)


async def list_page_after(conn: Connection, user_id: str, limit: int,
                          after: tuple[datetime, str] | None) -> list[Row]:
    """Up to `limit` notifications, newest first, strictly after the keyset `after`
    (created_at, id) of the previous page's last item."""
    cols = [notifications.c[name] for name in (*DTO_COLUMNS, "read_at")]
    stmt = select(*cols).where(notifications.c.user_id == user_id)
    if after is not None:
        stmt = stmt.where(tuple_(notifications.c.created_at, notifications.c.id) < after)
    return await conn.fetch_all(
        stmt.order_by(notifications.c.created_at.desc(), notifications.c.id.desc()).limit(limit))


async def get_notification(conn: Connection, notification_id: str) -> Row | None:
    cols = [notifications.c[name] for name in DTO_COLUMNS]
    return await conn.fetch_one(select(*cols).where(notifications.c.id == notification_id))


async def mark_read(conn: Connection, notification_id: str) -> None:
    await conn.execute(
        "UPDATE notifications SET is_read = true, read_at = coalesce(read_at, now()), "
        "updated_at = now(), version = version + 1 WHERE id = %(id)s AND NOT is_read",
        {"id": notification_id})


# ---------------------------------------------------------------- preferences

async def get_preferences(conn: Connection, user_id: str) -> Row | None:
    return await conn.fetch_one(select(notification_preferences)
                                .where(notification_preferences.c.user_id == user_id))


async def upsert_preferences(conn: Connection, user_id: str, values: dict[str, Any]) -> None:
    """Create the row with `values` (defaults elsewhere) or update just those columns."""
    stmt = pg_insert(notification_preferences).values(user_id=user_id, **values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["user_id"],
        set_={**{k: stmt.excluded[k] for k in values}, "updated_at": func.now(),
              "version": notification_preferences.c.version + 1})
    await conn.execute(stmt)


# ---------------------------------------------------------------- deliveries

async def claim_due_deliveries(conn: Connection, limit: int) -> list[Row]:
    """Due deliveries, locked for this transaction; rows another worker holds are skipped,
    so no two workers send the same delivery at once."""
    return await conn.fetch_all(
        """
        SELECT d.id, d.notification_id, d.channel, d.status, d.attempts,
               n.user_id, n.booking_id, n.event_type, n.metadata,
               p.enable_push, p.enable_sms, p.enable_email, p.fcm_token, p.phone_number,
               p.email, p.quiet_hours_start, p.quiet_hours_end, p.timezone,
               p.user_id IS NOT NULL AS has_preferences
        FROM notification_deliveries d
        JOIN notifications n ON n.id = d.notification_id
        LEFT JOIN notification_preferences p ON p.user_id = n.user_id
        WHERE d.status IN ('pending', 'deferred') AND d.next_attempt_at <= now()
        ORDER BY d.next_attempt_at, d.id
        LIMIT %(limit)s
        FOR UPDATE OF d SKIP LOCKED
        """, {"limit": limit})


async def update_delivery(conn: Connection, delivery_id: int, *, status: str,
                          attempts: int | None = None, next_attempt_at: datetime | None = None,
                          last_error: str | None = None, provider_id: str | None = None) -> None:
    values: dict[str, Any] = {"status": status, "updated_at": func.now()}
    if attempts is not None:
        values["attempts"] = attempts
    if next_attempt_at is not None:
        values["next_attempt_at"] = next_attempt_at
    if last_error is not None:
        values["last_error"] = last_error[:2000]
    if status == "sent":
        values["sent_at"] = func.now()
        values["provider_id"] = (provider_id or "")[:255]
    await conn.execute(notification_deliveries.update()
                       .where(notification_deliveries.c.id == delivery_id).values(**values))


async def delivery_statuses(conn: Connection, notification_id: str) -> list[Row]:
    return await conn.fetch_all(
        select(notification_deliveries.c.channel, notification_deliveries.c.status)
        .where(notification_deliveries.c.notification_id == notification_id)
        .order_by(notification_deliveries.c.channel))


async def record_channel_results(conn: Connection, notification_id: str, status: str,
                                 sent: list[str], failed: list[str]) -> None:
    """Channel results on the notification, with the per-channel sent times."""
    await conn.execute(
        """
        UPDATE notifications SET status = %(status)s,
               channels_sent = %(sent)s::jsonb, channels_failed = %(failed)s::jsonb,
               fcm_sent_at = CASE WHEN %(push)s THEN coalesce(fcm_sent_at, now()) END,
               sms_sent_at = CASE WHEN %(sms)s THEN coalesce(sms_sent_at, now()) END,
               email_sent_at = CASE WHEN %(email)s THEN coalesce(email_sent_at, now()) END,
               updated_at = now(), version = version + 1
        WHERE id = %(id)s
        """,
        {"id": notification_id, "status": status, "sent": _json_list(sent),
         "failed": _json_list(failed), "push": "push" in sent, "sms": "sms" in sent,
         "email": "email" in sent})


def _json_list(items: list[str]) -> str:
    return json.dumps(sorted(items))
