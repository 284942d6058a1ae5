"""Which partition an agent is handling, and which partitions this worker actively owns: for
tables that keep one entry per key and are scanned by a timer (tables/confirmations.py,
tables/offers.py), so the timer acts only on entries whose active owner is this worker."""

from __future__ import annotations

from faust import current_event
from faust.types import TP

from core.config import topic_name
from kilat import app


def current_partition() -> int:
    """The partition of the event being handled (its key's partition)."""
    event = current_event()
    if event is None:
        raise RuntimeError("only while handling an event")
    return event.message.partition


def actively_owned(logical_topic: str, partitions: set[int]) -> set[int]:
    """The partitions of `logical_topic` among `partitions` this worker is active for."""
    topic = topic_name(logical_topic)
    actives = app.assignor.assigned_actives()
    return {p for p in partitions if TP(topic, p) in actives}


def tables_settled() -> bool:
    """False while tables are being rebuilt or handed over (their content is not final)."""
    return not (app.rebalancing or app.in_recovery
                or not app.tables.recovery.completed.is_set())


async def changelog_written() -> None:
    """Wait until the table's changelog writes are in Kafka, before the event that caused them
    is marked handled (in the caller's transaction): after a crash the event is either handled
    again (puts and deletes are idempotent) or its entry is already durable for the next
    worker."""
    await app.producer.flush()
