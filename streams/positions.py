"""After each rebalance, wake the agents that are behind on a newly assigned partition.

See core/gaps.py: an agent reads back the messages it missed when the next message of the
partition reaches it; this makes sure one does, even on a quiet partition."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from core.gaps import check_positions
from kilat import app

log = logging.getLogger(__name__)
_pending: set[asyncio.Task] = set()


async def _send_marker(topic: str, partition: int, value: bytes) -> None:
    await app.producer.send_and_wait(topic, None, value, partition, None, None)


async def _check(assigned: set[Any]) -> None:
    try:
        sent = await check_positions(assigned, app.conf.id, _send_marker)
        if sent:
            log.info("position check: woke agents on %d partition(s)", sent)
    except Exception:  # the next message of each partition still triggers the read-back
        log.exception("position check after rebalance failed")


@app.on_partitions_assigned.connect
async def on_partitions_assigned(sender: Any, assigned: set[Any], **kwargs: Any) -> None:
    # In the background: the rebalance must not wait for Kafka and PostgreSQL round trips.
    task = asyncio.ensure_future(_check(set(assigned)))
    _pending.add(task)
    task.add_done_callback(_pending.discard)
