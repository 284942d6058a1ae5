"""Publishes outbox rows to Kafka, in insertion order, at least once.

One relay publishes at a time across all workers (a PostgreSQL advisory lock), so events of one
aggregate are produced in the order they were committed. Rows are marked published only after
the broker acknowledged them; a crash in between re-publishes them, and consumers deduplicate
by event id.
"""

from __future__ import annotations

import asyncio
import json
import logging

from mode import Service

from core.config import settings
from core.db import DatabaseUnavailable, db
from kilat import TOPICS, app

log = logging.getLogger(__name__)
RELAY_LOCK_ID = 727_274  # any constant shared by all workers
BATCH = 500


def _topics_by_name() -> dict:
    return {t.get_topic_name(): t for t in TOPICS.values()}


async def publish_batch() -> int:
    """Publish up to BATCH pending events; returns how many were published."""
    topics = _topics_by_name()
    async with db.transaction() as conn:
        if not await conn.scalar("SELECT pg_try_advisory_xact_lock(%(id)s)", {"id": RELAY_LOCK_ID}):
            return 0
        rows = await conn.fetch_all(
            "SELECT id, topic, key, value FROM outbox WHERE published_at IS NULL "
            "ORDER BY id LIMIT %(n)s",
            {"n": BATCH},
        )
        if not rows:
            return 0
        futures = []
        for row in rows:
            topic = topics.get(row["topic"]) or app.topic(
                row["topic"], key_serializer="raw", value_serializer="raw")
            value = json.dumps(row["value"], separators=(",", ":")).encode()
            futures.append(await topic.send(key=row["key"].encode(), value=value))
        await asyncio.gather(*futures)
        await conn.execute(
            "UPDATE outbox SET published_at = now() WHERE id = ANY(%(ids)s)",
            {"ids": [r["id"] for r in rows]},
        )
        return len(rows)


@app.service
class OutboxRelay(Service):
    """Runs in every worker; only the holder of the advisory lock publishes."""

    @Service.task
    async def _relay(self) -> None:
        poll = settings().outbox_poll_s
        while not self.should_stop:
            try:
                if await publish_batch() == 0:
                    await self.sleep(poll)
            except DatabaseUnavailable as exc:
                log.warning("outbox relay: database unavailable: %s", exc)
                await self.sleep(1.0)
            except Exception:
                log.exception("outbox relay failed; retrying")
                await self.sleep(1.0)

    @Service.timer(3600.0)
    async def _prune(self) -> None:
        try:
            await db.execute(
                "DELETE FROM outbox WHERE published_at < now() - interval '1 day'")
        except DatabaseUnavailable:
            pass
