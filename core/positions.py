"""Agents' durable positions (`consumer_positions`, see models/platform.py), used by core/gaps.py."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from core.db import Connection
from models.platform import consumer_positions


def positions_after(events: Iterable[Any]) -> dict[tuple[str, int], int]:
    """(topic, partition) → the offset after the last of `events` (Faust events or alike)."""
    out: dict[tuple[str, int], int] = {}
    for event in events:
        msg = event.message
        key = (msg.topic, msg.partition)
        out[key] = max(out.get(key, 0), msg.offset + 1)
    return out


async def record_positions(conn: Connection, consumer: str,
                           positions: dict[tuple[str, int], int]) -> None:
    """Move `consumer`'s positions forward (never back: a redelivery must not rewind them)."""
    for (topic, partition), next_offset in positions.items():
        stmt = pg_insert(consumer_positions).values(
            consumer=consumer, topic=topic, partition=partition, next_offset=next_offset)
        stmt = stmt.on_conflict_do_update(
            index_elements=["consumer", "topic", "partition"],
            set_={"next_offset": func.greatest(consumer_positions.c.next_offset,
                                               stmt.excluded.next_offset),
                  "updated_at": func.now()})
        await conn.execute(stmt)


async def stored_position(conn: Connection, consumer: str, topic: str,
                          partition: int) -> int | None:
    return await conn.scalar(
        select(consumer_positions.c.next_offset).where(
            consumer_positions.c.consumer == consumer, consumer_positions.c.topic == topic,
            consumer_positions.c.partition == partition))
