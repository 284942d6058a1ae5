"""Transactional outbox: events are written in the same DB transaction as the state they
describe, then published to Kafka by a relay (streams/outbox_relay.py).

So a row never exists without its event and an event is never published for a rolled-back
row. Publishing is at-least-once; every consumer deduplicates by event id.
"""

from __future__ import annotations

import json

from sqlalchemy import insert

from core.config import topic_name
from core.db import Connection
from models.events import CloudEvent, new_event
from models.platform import outbox


async def enqueue(conn: Connection, topic: str, key: str, event: CloudEvent) -> CloudEvent:
    """Record `event` for publication on logical `topic` with message key `key`."""
    value = json.loads(event.to_json())
    await conn.execute(
        insert(outbox).values(topic=topic_name(topic), key=str(key), event_id=event.id, value=value)
    )
    await conn.execute("SELECT pg_notify('kilat_outbox', '')")
    return event


async def emit(conn: Connection, topic: str, key: str, source: str, type_: str, data: dict,
               *, event_id: str | None = None) -> CloudEvent:
    """Build an envelope and enqueue it: the one-line way for a handler to publish an event."""
    return await enqueue(conn, topic, key, new_event(source, type_, data, event_id=event_id))
