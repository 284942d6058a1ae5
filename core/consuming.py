"""How every agent consumes Kilat events: decode → deduplicate → handle in one DB transaction.

* An event that cannot be decoded, or whose payload a handler rejects (MalformedEvent), goes to
  the dead-letter topic with its reason; the partition moves on.
* An event already handled by this consumer (same event id in `processed_events`) is skipped, so
  redelivery and replay have no second effect.
* A transient database failure (unreachable, timeouts, lock or serialization conflicts) is
  retried with backoff (core/retry.py): the partition waits rather than losing the event.
* The agent's own position is stored with the effects, and messages Faust committed past
  without handing them over are read back first (core/gaps.py).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert

from core.db import Connection, db
from core.gaps import OffsetGuard, guard_for, without_gaps
from core.retry import retrying
from core.sink import BatchingSink
from models.events import CloudEvent, MalformedEvent, decode_event, now_rfc3339
from models.platform import processed_events
from web.metrics import DEAD_LETTERS, EVENTS_PROCESSED

log = logging.getLogger(__name__)

Handler = Callable[[Connection, CloudEvent], Awaitable[Any]]


async def first_time(conn: Connection, consumer: str, event_id: str) -> bool:
    """Claim `event_id` for `consumer` inside the caller's transaction; False if already done."""
    stmt = (
        pg_insert(processed_events)
        .values(consumer=consumer, event_id=event_id)
        .on_conflict_do_nothing()
    )
    return await conn.execute(stmt) == 1


def _describe_raw(value: Any) -> dict[str, Any]:
    if isinstance(value, bytes):
        try:
            return {"value": value.decode("utf-8")}
        except UnicodeDecodeError:
            return {"value_base64": base64.b64encode(value).decode()}
    return {"value": value if isinstance(value, str) else json.dumps(value, default=str)}


async def dead_letter(reason: str, consumer: str, raw: Any, *, key: bytes | None = None,
                      topic: str = "", partition: int | None = None,
                      offset: int | None = None) -> None:
    """Publish a rejected message to the dead-letter topic with the reason."""
    from kilat import dead_letter as dlq_topic  # late import: kilat imports this module

    record = {
        "reason": reason, "consumer": consumer, "topic": topic, "partition": partition,
        "offset": offset, "key": key.decode("utf-8", "replace") if key else None,
        "dead_lettered_at": now_rfc3339(), **_describe_raw(raw),
    }
    log.warning("dead-lettered message from %s (%s): %s", topic, consumer, reason)
    DEAD_LETTERS.labels(consumer).inc()
    await dlq_topic.send(key=key or b"", value=json.dumps(record).encode())


async def handle_once(guard: OffsetGuard, message: Any, event: CloudEvent,
                      handler: Handler) -> bool:
    """Run `handler` for `event` exactly once per consumer, storing the agent's position in the
    same transaction; transient database failures (core/retry.py) are waited out, never
    dead-lettered.

    Returns False if the event had already been handled."""
    async def once() -> bool:
        async with db.transaction() as conn:
            if not await first_time(conn, guard.consumer, event.id):
                return False
            await handler(conn, event)
            await guard.record(conn, [message])
            return True

    return await retrying(once, f"{guard.consumer} on {event.type} {event.id}")


async def consume(stream: Any, consumer: str, handlers: dict[str, Handler]) -> None:
    """Drive a Faust stream of raw events through `handlers` (keyed by event type).

    Types without a handler are acknowledged and ignored."""
    guard = guard_for(consumer, stream.channel.topics)
    async for event_msg in without_gaps(stream.events(), guard):
        await handle_message(guard, event_msg, handlers)
        await guard.passed(event_msg)  # handled events stored their position already


async def handle_message(guard: OffsetGuard, event_msg: Any,
                         handlers: dict[str, Handler]) -> None:
    """Decode one message and run its handler (dead-lettering what cannot be handled)."""
    consumer = guard.consumer
    raw = event_msg.value
    msg = event_msg.message
    where = {"key": event_msg.key, "topic": msg.topic, "partition": msg.partition,
             "offset": msg.offset}
    try:
        event = decode_event(raw)
    except MalformedEvent as exc:
        await dead_letter(str(exc), consumer, raw, **where)
        return
    handler = handlers.get(event.type) or handlers.get(event.type.lower())
    if handler is None:
        return
    try:
        handled = await handle_once(guard, event_msg, event, handler)
        EVENTS_PROCESSED.labels(consumer, event.type, "ok" if handled else "duplicate").inc()
    except MalformedEvent as exc:
        EVENTS_PROCESSED.labels(consumer, event.type, "dead_lettered").inc()
        await dead_letter(f"{event.type}: {exc}", consumer, raw, **where)
    except Exception as exc:  # a bug must not stall the partition or kill the worker
        EVENTS_PROCESSED.labels(consumer, event.type, "dead_lettered").inc()
        log.exception("%s failed on %s %s", consumer, event.type, event.id)
        await dead_letter(f"{event.type}: handler error: {exc!r}", consumer, raw, **where)


async def consume_into_sink(stream: Any, sink: BatchingSink,
                            handle: Callable[[Any], Awaitable[None]]) -> None:
    """Drive a Faust stream read with noack through `handle`, which acknowledges each event
    through `sink` (after its rows commit). A malformed event or a handler bug is dead-lettered
    and acknowledged in order, so the partition moves on and the worker stays up."""
    guard = sink.guard
    assert guard is not None, "a sink fed by an agent stores the agent's position"
    async for event in without_gaps(stream.noack().events(), guard):
        try:
            await handle(event)
            continue
        except MalformedEvent as exc:
            reason = str(exc)
        except Exception as exc:  # a bug must not stall the partition or kill the worker
            log.exception("%s failed", guard.consumer)
            reason = f"handler error: {exc!r}"
        msg = event.message
        await dead_letter(reason, guard.consumer, event.value, key=event.key, topic=msg.topic,
                          partition=msg.partition, offset=msg.offset)
        await sink.ack_in_order(event)
