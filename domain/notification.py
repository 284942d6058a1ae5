"""Pure rules of the notification domain: who is told about an event, what they are told,
which channels carry it, quiet hours and retry timing. No I/O here.
"""

from __future__ import annotations

import html
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from string import Template
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

OWNER = "owner"
RUNNER = "runner"
CHANNELS = ("push", "sms", "email")
DEFAULT_TIMEZONE = "Asia/Kuala_Lumpur"
ZERO_UUID = "00000000-0000-0000-0000-000000000000"

MAX_ATTEMPTS = 5
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 300.0

# Who hears about each event (reference §3.6, extended: the original skipped held/failed/
# tracking events for lack of an owner id and told only the canceller about a cancellation).
# Events caused by one party are sent to the other party; milestones that matter to both
# (acceptance, completion, cancellation, payout, end of trip) go to both.
RECIPIENTS: dict[str, tuple[str, ...]] = {
    "booking.requested": (OWNER,),
    "booking.accepted": (OWNER, RUNNER),
    "booking.pet_picked_up": (OWNER,),
    "booking.delivery_in_progress": (OWNER,),
    "booking.delivery_confirmed": (OWNER,),
    "booking.completed": (OWNER, RUNNER),
    "booking.cancelled": (OWNER, RUNNER),
    "booking.disputed": (RUNNER,),  # the runner's payout is frozen until an admin resolves it
    "payment.escrow_held": (OWNER,),
    "payment.escrow_released": (RUNNER, OWNER),
    "payment.escrow_refunded": (OWNER,),
    "payment.failed": (OWNER,),
    "tracking.started": (OWNER,),
    "tracking.runner_arriving": (OWNER,),
    "tracking.completed": (OWNER, RUNNER),
    "booking.job_offered": (RUNNER,),
}

# Events told on some channels only: a job offer is worth a push to a runner who is online and
# looking at their phone, not an SMS or an email that arrives after someone else took the job.
EVENT_CHANNELS: dict[str, tuple[str, ...]] = {
    "booking.job_offered": ("push",),
}


def notified_events() -> tuple[str, ...]:
    return tuple(RECIPIENTS)


def _id(value: Any) -> str | None:
    """A canonical user id, or None for a missing, malformed or all-zero id."""
    if isinstance(value, uuid.UUID):
        value = str(value)
    if not isinstance(value, str):
        return None
    try:
        ident = str(uuid.UUID(value))
    except ValueError:
        return None
    return None if ident == ZERO_UUID else ident


def valid_uuid(value: Any) -> bool:
    return isinstance(value, str) and _id(value) is not None


def needs_booking_lookup(event_type: str, data: dict[str, Any]) -> bool:
    """True when the payload lacks a recipient id that the booking row could supply."""
    roles = RECIPIENTS.get(event_type, ())
    return bool(data.get("booking_id")) and any(
        _id(data.get(f"{role}_id")) is None for role in roles)


def recipients(event_type: str, data: dict[str, Any],
               booking: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """(role, user id) pairs to notify; ids come from the payload, else from the booking."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for role in RECIPIENTS.get(event_type, ()):
        user_id = _id(data.get(f"{role}_id")) or _id((booking or {}).get(f"{role}_id"))
        if user_id and user_id not in seen:
            seen.add(user_id)
            out.append((role, user_id))
    return out


def money(cents: Any) -> str:
    """`RM 12.50` for 1250 cents (the original's `"RM %.2f"`)."""
    try:
        return f"RM {int(cents) / 100:.2f}"
    except (TypeError, ValueError):
        return ""


def paid_cents(data: dict[str, Any]) -> int | None:
    """What the owner paid, from the split (payout + fee = amount): escrow releases recorded
    before they carried `amount_cents` still name the amount."""
    try:
        return int(data["runner_payout_cents"]) + int(data["platform_fee_cents"])
    except (KeyError, TypeError, ValueError):
        return None


def template_vars(event_type: str, data: dict[str, Any], role: str, user_id: str,
                  booking: dict[str, Any] | None = None) -> dict[str, str]:
    """Variables a template may use: every payload field as text, plus formatted amounts."""
    values: dict[str, str] = {k: "" if v is None else str(v) for k, v in data.items()
                              if isinstance(v, str | int | float | bool) or v is None}
    if booking and not values.get("booking_number"):
        values["booking_number"] = str(booking.get("booking_number") or "")
    values.setdefault("booking_number", "")
    values.setdefault("booking_id", "")
    amount = (data.get("final_price_cents") or data.get("amount_cents")
              or data.get("estimated_price_cents") or paid_cents(data))
    values["amount"] = money(amount)
    values["runner_payout"] = money(data.get("runner_payout_cents"))
    values["platform_fee"] = money(data.get("platform_fee_cents"))
    values.setdefault("reason", str(data.get("refund_reason") or ""))
    values.setdefault("refund_reason", "")
    values.setdefault("total_distance_km", "")
    values["recipient_role"] = role
    values["cancelled_by_you"] = "yes" if data.get("cancelled_by") == user_id else "no"
    values["cancelled_by_party"] = "you" if data.get("cancelled_by") == user_id else (
        "the runner" if role == OWNER else "the owner")
    return values


@dataclass
class Rendered:
    """A notification's text for each channel it can go out on."""

    title: str
    body: str
    variants: dict[str, dict[str, str]] = field(default_factory=dict)


def _render(text: Any, values: dict[str, str]) -> str:
    if not isinstance(text, str):
        raise KeyError("template text is not a string")
    return Template(text).substitute(values)


def render(template: dict[str, Any] | None, role: str, values: dict[str, str],
           event_type: str) -> Rendered:
    """Render the role's push/sms/email variants; a variant with an unknown placeholder is
    left out. Title and body come from push, else SMS, else email (as the original did)."""
    spec = (template or {}).get(role) or (template or {}).get("default") or {}
    variants: dict[str, dict[str, str]] = {}
    # Payload text (a cancellation reason, say) is user input: escape it inside HTML.
    escaped = {k: html.escape(v) for k, v in values.items()}
    for channel in CHANNELS:
        part = spec.get(channel)
        if not isinstance(part, dict):
            continue
        try:
            variants[channel] = {k: _render(v, escaped if k == "html" else values)
                                 for k, v in part.items()}
        except (KeyError, ValueError):
            continue
    if "push" in variants:
        title, body = variants["push"].get("title", ""), variants["push"].get("body", "")
    elif "sms" in variants:
        title, body = "Kilat", variants["sms"].get("body", "")
    elif "email" in variants:
        title = variants["email"].get("subject", "")
        body = re.sub(r"<[^>]+>", "", variants["email"].get("html", "")).strip()
    else:
        title, body = "Kilat", event_type
    # Every channel can carry the notification even when its own variant is missing.
    variants.setdefault("push", {"title": title, "body": body})
    variants.setdefault("sms", {"body": f"{title}: {body}" if body else title})
    variants.setdefault("email", {"subject": title, "html": f"<p>{html.escape(body)}</p>"})
    return Rendered(title=title[:255], body=body, variants=variants)


# ---------------------------------------------------------------- preferences and channels

def default_preferences(user_id: str) -> dict[str, Any]:
    """What a user without a preferences row gets: every channel enabled, no contacts."""
    return {"user_id": user_id, "enable_push": True, "enable_sms": True, "enable_email": True,
            "fcm_token": None, "phone_number": None, "email": None,
            "quiet_hours_start": None, "quiet_hours_end": None, "timezone": DEFAULT_TIMEZONE}


def contact_for(channel: str, prefs: dict[str, Any]) -> str | None:
    key = {"push": "fcm_token", "sms": "phone_number", "email": "email"}[channel]
    value = prefs.get(key)
    return value or None


def channel_enabled(channel: str, prefs: dict[str, Any]) -> bool:
    return bool(prefs.get(f"enable_{channel}"))


def channels_for(prefs: dict[str, Any], event_type: str = "") -> list[str]:
    """Channels that can carry a notification now: enabled, with a contact to send to, and
    used for this kind of event."""
    allowed = EVENT_CHANNELS.get(event_type, CHANNELS)
    return [c for c in CHANNELS
            if c in allowed and channel_enabled(c, prefs) and contact_for(c, prefs)]


_TIME_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")


def parse_clock(value: str) -> time:
    """`HH:MM` (or `HH:MM:SS`) 24-hour clock time; ValueError otherwise."""
    m = _TIME_RE.match(value or "")
    if not m:
        raise ValueError("must be a time as HH:MM")
    return time(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


def format_clock(value: time | None) -> str | None:
    if value is None:
        return None
    return value.strftime("%H:%M:%S" if value.second else "%H:%M")


def valid_timezone(name: str) -> bool:
    if not name or "\x00" in name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a tzdata directory ("Asia") or a name longer than a file name.
        return False
    return True


def quiet_until(now: datetime, start: time | None, end: time | None,
                tz: str | None) -> datetime | None:
    """If `now` falls in the quiet window [start, end) of the user's local clock, the UTC
    instant the window ends; else None. A window with start > end spans midnight; start == end
    means no quiet hours."""
    if start is None or end is None or start == end:
        return None
    zone = ZoneInfo(tz if tz and valid_timezone(tz) else DEFAULT_TIMEZONE)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    local = now.astimezone(zone)
    t = local.time().replace(tzinfo=None)
    today = local.date()
    if start < end:
        if not (start <= t < end):
            return None
        end_day = today
    elif t >= start:
        end_day = today + timedelta(days=1)
    elif t < end:
        end_day = today
    else:
        return None
    return datetime.combine(end_day, end, tzinfo=zone).astimezone(UTC)


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff after the `attempts`-th failed attempt (1 s, 2 s, 4 s, ...)."""
    return timedelta(seconds=min(BACKOFF_BASE_S * 2 ** max(attempts - 1, 0), BACKOFF_MAX_S))


def overall_status(statuses: list[str]) -> str:
    """A notification's status from its deliveries' statuses.

    `skipped` when it has no channel (stored for the in-app list only); `pending` while any
    delivery is outstanding; then `sent`, `partially_sent` or `failed`."""
    if not statuses:
        return "skipped"
    if any(s in ("pending", "deferred") for s in statuses):
        return "pending"
    sent = sum(1 for s in statuses if s == "sent")
    if sent == len(statuses):
        return "sent"
    return "partially_sent" if sent else "failed"
