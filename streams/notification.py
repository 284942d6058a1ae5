"""Agents of the notification domain.

Two separate steps (DESIGN item 7):
1. Store. `booking.events`, `payment.events` and `tracking.events` → one notification row per
   recipient (owner and/or runner), rendered from `templates/notifications/<event>.json`, plus
   one `notification_deliveries` row per channel the recipient can receive on. Runs through
   `core.consuming.consume`, so an event (even produced twice) is stored once.
2. Deliver. A timer in every worker claims due deliveries with `FOR UPDATE SKIP LOCKED` and
   sends them through the channel adapters (pyfcm, twilio, SMTP). Failures are retried with
   exponential backoff up to MAX_ATTEMPTS; quiet hours defer a delivery to the end of the
   user's quiet window. A `sent` delivery is never picked up again.

Residual at-least-once window: the row lock is held while sending and `sent` is committed
right after; if the worker dies (or the database goes away) after the provider accepted a
message but before that commit, the delivery is still pending and is sent again later.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from core import channels
from core.config import settings
from core.consuming import consume
from core.db import Connection, DatabaseUnavailable, Row, db
from domain import notification as rules
from kilat import app, booking_events, payment_events, tracking_events
from models.events import CloudEvent, MalformedEvent
from stores import booking as booking_store
from stores import notification as store

log = logging.getLogger(__name__)

DELIVERY_INTERVAL_S = 0.5
DELIVERY_BATCH = 20
DEFAULT_TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates" / "notifications"


def templates_dir() -> Path:
    """`TEMPLATES_DIR`, else the source tree's folder, else `./templates/notifications` (an
    installed package runs from the deployment directory that holds the templates)."""
    if settings().templates_dir:
        return Path(settings().templates_dir)
    for folder in (DEFAULT_TEMPLATES_DIR, Path.cwd() / "templates" / "notifications"):
        if folder.is_dir():
            return folder
    log.warning("no notification templates found; notifications use generic text")
    return DEFAULT_TEMPLATES_DIR


@lru_cache(maxsize=1)
def templates() -> dict[str, dict[str, Any]]:
    """Every `<event type>.json` in the templates directory, read once per process."""
    folder = templates_dir()
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            out[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            log.exception("unreadable notification template %s", path)
    return out


# ---------------------------------------------------------------- step 1: store

async def store_notifications(conn: Connection, event: CloudEvent) -> None:
    data = event.data
    booking = None
    booking_id = data.get("booking_id")
    if booking_id in (None, ""):
        booking_id = None
    elif not rules.valid_uuid(booking_id):
        raise MalformedEvent(f"booking_id {booking_id!r} is not a UUID")
    if booking_id and (rules.needs_booking_lookup(event.type, data)
                       or not data.get("booking_number")):
        booking = await booking_store.get_booking(conn, booking_id)
        if not data.get("booking_number") and not (booking or {}).get("booking_number"):
            # Events such as tracking.* carry no number; an earlier notification may know it.
            number = await store.known_booking_number(conn, booking_id)
            if number:
                data = {**data, "booking_number": number}
    targets = rules.recipients(event.type, data, booking)
    if not targets:
        log.info("%s %s: no recipient to notify", event.type, event.id)
        return
    now = datetime.now(UTC)
    for role, user_id in targets:
        values = rules.template_vars(event.type, data, role, user_id, booking)
        rendered = rules.render(templates().get(event.type), role, values, event.type)
        prefs = await store.get_preferences(conn, user_id) or rules.default_preferences(user_id)
        chans = rules.channels_for(prefs, event.type)
        notification_id = await store.insert_notification(conn, {
            "user_id": user_id, "booking_id": booking_id, "event_id": event.id,
            "event_type": event.type, "recipient_role": role, "title": rendered.title,
            "body": rendered.body, "status": rules.overall_status(["pending"] if chans else []),
            "metadata": {"variants": rendered.variants, "vars": values},
        })
        if notification_id is None or not chans:
            continue
        quiet_end = rules.quiet_until(now, prefs.get("quiet_hours_start"),
                                      prefs.get("quiet_hours_end"), prefs.get("timezone"))
        await store.insert_deliveries(conn, notification_id, chans,
                                      "deferred" if quiet_end else "pending", quiet_end)


HANDLERS = {event_type: store_notifications for event_type in rules.notified_events()}


@app.agent(booking_events, name="kilat.notification-booking", concurrency=1)
async def notify_on_bookings(stream):
    await consume(stream, "notification-booking", HANDLERS)


@app.agent(payment_events, name="kilat.notification-payment", concurrency=1)
async def notify_on_payments(stream):
    await consume(stream, "notification-payment", HANDLERS)


@app.agent(tracking_events, name="kilat.notification-tracking", concurrency=1)
async def notify_on_tracking(stream):
    await consume(stream, "notification-tracking", HANDLERS)


# ---------------------------------------------------------------- step 2: deliver

def _prefs_of(row: Row) -> dict[str, Any]:
    if not row["has_preferences"]:
        return rules.default_preferences(row["user_id"])
    return {k: row[k] for k in ("enable_push", "enable_sms", "enable_email", "fcm_token",
                                "phone_number", "email", "quiet_hours_start",
                                "quiet_hours_end", "timezone")}


async def _attempt(row: Row, prefs: dict[str, Any]) -> str:
    channel = row["channel"]
    if not rules.channel_enabled(channel, prefs):
        raise channels.ChannelError(f"{channel} disabled in preferences", permanent=True)
    contact = rules.contact_for(channel, prefs)
    if not contact:
        raise channels.ChannelError(f"no {channel} contact", permanent=True)
    meta = row["metadata"] or {}
    content = (meta.get("variants") or {}).get(channel) or {}
    data = {"notification_id": str(row["notification_id"]), "event_type": row["event_type"],
            "booking_id": str(row["booking_id"] or "")}
    return await channels.send(channel, contact, content, data)


async def deliver_due(limit: int = DELIVERY_BATCH) -> int:
    """Send the due deliveries of one batch; returns how many were claimed."""
    async with db.transaction() as conn:
        rows = await store.claim_due_deliveries(conn, limit)
        if not rows:
            return 0
        now = datetime.now(UTC)
        to_send: list[tuple[Row, dict[str, Any]]] = []
        for row in rows:
            prefs = _prefs_of(row)
            quiet_end = rules.quiet_until(now, prefs["quiet_hours_start"],
                                          prefs["quiet_hours_end"], prefs["timezone"])
            if quiet_end is not None:
                if row["status"] != "deferred":
                    log.info("delivery %s deferred by quiet hours until %s", row["id"], quiet_end)
                await store.update_delivery(conn, row["id"], status="deferred",
                                            next_attempt_at=quiet_end)
            else:
                to_send.append((row, prefs))
        results = await asyncio.gather(*(_attempt(row, prefs) for row, prefs in to_send),
                                       return_exceptions=True)
        touched: set[str] = set()
        for (row, _), result in zip(to_send, results, strict=True):
            attempts = row["attempts"] + 1
            touched.add(row["notification_id"])
            if not isinstance(result, BaseException):
                await store.update_delivery(conn, row["id"], status="sent", attempts=attempts,
                                            provider_id=result)
                continue
            if not isinstance(result, channels.ChannelError):
                log.error("delivery %s: unexpected error", row["id"], exc_info=result)
                result = channels.ChannelError(f"{type(result).__name__}: {result}")
            if result.permanent or attempts >= rules.MAX_ATTEMPTS:
                await store.update_delivery(conn, row["id"], status="failed", attempts=attempts,
                                            last_error=str(result))
            else:
                await store.update_delivery(conn, row["id"], status="pending", attempts=attempts,
                                            last_error=str(result),
                                            next_attempt_at=now + rules.retry_delay(attempts))
        for notification_id in touched:
            deliveries = await store.delivery_statuses(conn, notification_id)
            statuses = [d["status"] for d in deliveries]
            await store.record_channel_results(
                conn, notification_id, rules.overall_status(statuses),
                [d["channel"] for d in deliveries if d["status"] == "sent"],
                [d["channel"] for d in deliveries if d["status"] == "failed"])
        return len(rows)


@app.timer(interval=DELIVERY_INTERVAL_S, name="kilat.notification-deliveries")
async def deliver_notifications() -> None:
    try:
        while await deliver_due() == DELIVERY_BATCH:
            pass
    except DatabaseUnavailable as exc:
        log.warning("notification deliveries: database unavailable (%s)", exc)
    except Exception:  # never let the timer die
        log.exception("notification deliveries failed")
