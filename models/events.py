"""The CloudEvent-style envelope every Kilat event travels in, and the topic catalogue.

Wire format (contract §4.1): `{"id","source","type","time","datacontenttype","data"}` as JSON,
no `specversion`. The Kafka message key is the aggregate id (booking id, runner id, ...), so all
events of one aggregate land on one partition, in order.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import faust

# Logical topic names; the deployment may prefix them (core.config.topic_name).
BOOKING_EVENTS = "booking.events"
PAYMENT_EVENTS = "payment.events"
RUNNER_EVENTS = "runner.events"
TRACKING_EVENTS = "tracking.events"
REVIEW_EVENTS = "review.events"
CHAT_EVENTS = "chat.events"
IDENTITY_EVENTS = "identity.events"
# Internal: GPS fixes re-keyed by booking id, so trip state lives with the booking's partition.
TRIP_FIXES = "kilat.trip-fixes"
DEAD_LETTER = "kilat.dead-letter"
# Internal: failed sign-ins re-keyed by throttle counter (account at address, address, account),
# so each counter lives with one partition of the windowed table.
LOGIN_FAILURES = "kilat.login-failures"
# Internal: "time for the next round of offers" ticks, keyed by booking id like the booking and
# payment events, so the job-offer agent handles them in the booking's sequence.
JOB_OFFER_ROUNDS = "kilat.job-offer-rounds"

PUBLIC_TOPICS = (
    BOOKING_EVENTS, PAYMENT_EVENTS, RUNNER_EVENTS, TRACKING_EVENTS, REVIEW_EVENTS,
    CHAT_EVENTS, IDENTITY_EVENTS,
)


class MalformedEvent(ValueError):
    """An event that cannot be decoded or lacks what its type requires."""


def now_rfc3339() -> str:
    """UTC time in RFC 3339 with microseconds, e.g. 2026-02-12T09:00:00.123456Z."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class CloudEvent(faust.Record, serializer="json", include_metadata=False):
    id: str
    source: str
    type: str
    time: str
    data: dict
    datacontenttype: str = "application/json"

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "id": self.id, "source": self.source, "type": self.type, "time": self.time,
                "datacontenttype": self.datacontenttype, "data": self.data,
            },
            separators=(",", ":"), default=str,
        ).encode()


def new_event(source: str, type_: str, data: dict[str, Any], *, event_id: str | None = None) -> CloudEvent:
    """A new envelope; `occurred_at` is added to the payload when absent."""
    payload = dict(data)
    payload.setdefault("occurred_at", now_rfc3339())
    return CloudEvent(
        id=event_id or str(uuid.uuid4()), source=source, type=type_, time=now_rfc3339(),
        data=payload,
    )


def decode_event(raw: bytes | str | dict | CloudEvent) -> CloudEvent:
    """Parse and check an envelope; raises MalformedEvent with a reason."""
    if isinstance(raw, CloudEvent):
        return raw
    if isinstance(raw, bytes | str):
        try:
            raw = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as exc:
            raise MalformedEvent(f"not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise MalformedEvent("envelope is not a JSON object")
    for key in ("id", "type"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise MalformedEvent(f"envelope field '{key}' is missing or not a string")
    data = raw.get("data")
    if not isinstance(data, dict):
        raise MalformedEvent("envelope field 'data' is missing or not an object")
    return CloudEvent(
        id=raw["id"], source=str(raw.get("source", "")), type=raw["type"],
        time=str(raw.get("time", "")), data=data,
        datacontenttype=str(raw.get("datacontenttype", "application/json")),
    )


def require(data: dict, *keys: str) -> None:
    """Raise MalformedEvent if a payload lacks one of the keys a handler needs."""
    missing = [k for k in keys if data.get(k) in (None, "")]
    if missing:
        raise MalformedEvent(f"payload is missing {', '.join(missing)}")


def require_uuid(data: dict, key: str) -> str:
    """The payload's `key` as a canonical UUID string; MalformedEvent if absent or not one."""
    require(data, key)
    try:
        return str(uuid.UUID(str(data[key])))
    except ValueError:
        raise MalformedEvent(f"{key} is not a UUID") from None
