"""HTTP views of the notification domain (reference §2.6).

Differences from the reference (see docs/notifications.md): `GET /notifications/:id` is real
(404 for someone else's), other users' notifications are 404 on read (not 500), the read route
also accepts POST, preferences have defaults (GET never 404s) and take contacts, quiet hours and
a timezone, and the DTO carries `updated_at` and `type`.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from datetime import datetime
from typing import Any

from aiohttp import web

from core.db import Row, db
from domain import notification as rules
from stores import notification as store
from web.http import (
    Body,
    authenticate,
    bad_request,
    format_time,
    json_response,
    message,
    not_found,
    ok,
    page_params,
    paginated,
    parse_body,
    path_uuid,
    read_json,
)

routes = web.RouteTableDef()

PHONE_RE = re.compile(r"^\+?[1-9]\d{6,14}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_TOKEN_LEN = 255


def notification_dto(row: Row) -> dict[str, Any]:
    dto: dict[str, Any] = {
        "id": row["id"], "user_id": row["user_id"], "event_type": row["event_type"],
        "type": row["event_type"], "title": row["title"], "body": row["body"],
        "status": row["status"], "is_read": row["is_read"],
        "channels_sent": row["channels_sent"] or [], "channels_failed": row["channels_failed"] or [],
        "created_at": row["created_at"], "updated_at": row["updated_at"],
    }
    if row.get("booking_id"):
        dto["booking_id"] = row["booking_id"]
    return dto


def preferences_dto(prefs: dict[str, Any]) -> dict[str, Any]:
    dto: dict[str, Any] = {"user_id": prefs["user_id"], "enable_push": prefs["enable_push"],
                           "enable_sms": prefs["enable_sms"], "enable_email": prefs["enable_email"]}
    for key in ("fcm_token", "phone_number", "email"):
        if prefs.get(key):
            dto[key] = prefs[key]
    for key in ("quiet_hours_start", "quiet_hours_end"):
        if prefs.get(key) is not None:
            dto[key] = rules.format_clock(prefs[key])
    dto["timezone"] = prefs.get("timezone") or rules.DEFAULT_TIMEZONE
    return dto


# ---------------------------------------------------------------- preferences (before /{id})

class PreferencesBody(Body):
    # Missing booleans mean false, as in the reference; the other fields are left unchanged
    # when missing and cleared with null or "".
    enable_push: bool = False
    enable_sms: bool = False
    enable_email: bool = False
    phone_number: str | None = None
    email: str | None = None
    quiet_hours_start: str | None = None
    quiet_hours_end: str | None = None
    timezone: str | None = None


def preference_changes(body: PreferencesBody, current: dict[str, Any]) -> dict[str, Any]:
    """Validated column values to store; raises 400 with a clear message."""
    given = body.model_fields_set
    values: dict[str, Any] = {"enable_push": body.enable_push, "enable_sms": body.enable_sms,
                              "enable_email": body.enable_email}
    if "phone_number" in given:
        phone = (body.phone_number or "").strip()
        if phone and not PHONE_RE.match(phone):
            raise bad_request("invalid phone_number: use international format, e.g. +60123456789")
        values["phone_number"] = phone or None
    if "email" in given:
        email = (body.email or "").strip()
        if email and (len(email) > 255 or not EMAIL_RE.match(email)):
            raise bad_request("invalid email")
        values["email"] = email.lower() or None
    for key in ("quiet_hours_start", "quiet_hours_end"):
        if key in given:
            raw = (getattr(body, key) or "").strip()
            try:
                values[key] = rules.parse_clock(raw) if raw else None
            except ValueError:
                raise bad_request(f"invalid {key}: must be a time as HH:MM") from None
    if "timezone" in given:
        tz = (body.timezone or "").strip() or rules.DEFAULT_TIMEZONE
        if not rules.valid_timezone(tz):
            raise bad_request("invalid timezone: use an IANA name, e.g. Asia/Kuala_Lumpur")
        values["timezone"] = tz
    start = values.get("quiet_hours_start", current.get("quiet_hours_start"))
    end = values.get("quiet_hours_end", current.get("quiet_hours_end"))
    if (start is None) != (end is None):
        raise bad_request("quiet_hours_start and quiet_hours_end must be set together")
    if start is not None and start == end:
        raise bad_request("quiet_hours_start and quiet_hours_end must differ")
    return values


@routes.get("/api/v1/notifications/preferences")
async def get_preferences(request: web.Request) -> web.Response:
    user = authenticate(request)
    async with db.connect() as conn:
        prefs = await store.get_preferences(conn, user.user_id)
    if prefs is None:  # as in the original; delivery still uses the defaults (all channels)
        raise not_found("NotificationPreference", user.user_id)
    return ok(preferences_dto(prefs))


@routes.put("/api/v1/notifications/preferences")
async def put_preferences(request: web.Request) -> web.Response:
    user = authenticate(request)
    body = await parse_body(request, PreferencesBody)
    async with db.transaction() as conn:
        current = await store.get_preferences(conn, user.user_id) or {}
        await store.upsert_preferences(conn, user.user_id, preference_changes(body, current))
    return message("preferences updated")


@routes.post("/api/v1/notifications/fcm-token")
async def register_fcm_token(request: web.Request) -> web.Response:
    user = authenticate(request)
    data = await read_json(request, required=False)
    token = data.get("token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token.strip():
        raise bad_request("token is required")
    if len(token.strip()) > MAX_TOKEN_LEN:
        raise bad_request(f"token must be at most {MAX_TOKEN_LEN} characters")
    async with db.transaction() as conn:
        await store.upsert_preferences(conn, user.user_id, {"fcm_token": token.strip()})
    return message("FCM token registered")


# ---------------------------------------------------------------- notifications

CURSOR_LIMIT, CURSOR_MAX_LIMIT = 20, 50


def encode_cursor(row: Row) -> str:
    raw = json.dumps({"c": format_time(row["created_at"]), "i": str(row["id"])},
                     separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[datetime, str]:
    """The keyset a cursor carries; 400 `invalid cursor` for anything else."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        created = datetime.fromisoformat(raw["c"].replace("Z", "+00:00"))
        return created, str(uuid.UUID(raw["i"]))
    except (ValueError, TypeError, KeyError, AttributeError):
        raise bad_request("invalid cursor") from None


def cursor_item(row: Row) -> dict[str, Any]:
    item: dict[str, Any] = {"id": row["id"], "type": row["event_type"], "title": row["title"],
                            "body": row["body"], "createdAt": row["created_at"]}
    if row.get("read_at") is not None:
        item["readAt"] = row["read_at"]
    return item


async def list_by_cursor(request: web.Request, user_id: str) -> web.Response:
    """The later cursor list the iOS app reads: un-enveloped `{items, nextCursor}`."""
    cursor = request.query.get("cursor", "").strip()
    after = decode_cursor(cursor) if cursor else None
    try:
        limit = int(request.query.get("limit", CURSOR_LIMIT))
    except ValueError:
        limit = CURSOR_LIMIT
    limit = CURSOR_LIMIT if limit < 1 else min(limit, CURSOR_MAX_LIMIT)
    async with db.connect() as conn:
        rows = await store.list_page_after(conn, user_id, limit + 1, after)
    more = len(rows) > limit
    rows = rows[:limit]
    return json_response({"items": [cursor_item(r) for r in rows],
                          "nextCursor": encode_cursor(rows[-1]) if more else ""})


@routes.get("/api/v1/notifications")
async def list_notifications(request: web.Request) -> web.Response:
    """Paginated envelope (`page`, `limit`); with a `cursor` parameter (even empty) the later
    cursor form instead."""
    user = authenticate(request)
    if "cursor" in request.query:
        return await list_by_cursor(request, user.user_id)
    page, limit = page_params(request, default_limit=20, max_limit=100, over_max=20)
    async with db.connect() as conn:
        rows, total = await store.list_for_user(conn, user.user_id, limit, (page - 1) * limit)
    return paginated([notification_dto(r) for r in rows], total, page, limit)


async def _own_notification(request: web.Request) -> tuple[str, Row | None]:
    user = authenticate(request)
    notification_id = path_uuid(request, "id", "invalid notification ID")
    async with db.connect() as conn:
        row = await store.get_notification(conn, notification_id)
    # Someone else's notification is indistinguishable from a missing one.
    if row is None or str(row["user_id"]) != user.user_id:
        raise not_found("Notification", notification_id)
    return notification_id, row


@routes.get("/api/v1/notifications/{id}")
async def get_notification(request: web.Request) -> web.Response:
    _, row = await _own_notification(request)
    return ok(notification_dto(row))


async def mark_read(request: web.Request) -> web.Response:
    notification_id, _ = await _own_notification(request)
    async with db.transaction() as conn:
        await store.mark_read(conn, notification_id)
    return message("notification marked as read")


# The iOS client POSTs what the reference serves on PUT.
routes.put("/api/v1/notifications/{id}/read")(mark_read)
routes.post("/api/v1/notifications/{id}/read")(mark_read)
