"""Messages Faust never handed to an agent, noticed by the agent and read back from Kafka.

Faust can let an agent miss messages in two ways, and in both it commits past them:
* while a rebalance resumes the flow, its fetch loop can leave out a few messages of a newly
  assigned partition, which it records as a "gap" (as if they had been compacted away);
* while a worker stops, its streams skip the messages still buffered and acknowledge them, so
  the group's committed offset moves past messages nobody handled.

Each agent therefore keeps its own durable position per partition (`consumer_positions`, written
in the transaction of its effects: core/consuming.py, core/sink.py). Kilat's topics are neither
compacted nor transactional, so their offsets are dense: an agent that sees offset N+2 after N,
or whose first message after an assignment lies beyond its stored position (or, for an agent
with none yet, the group's committed offset), has missed messages. `without_gaps` wraps the
agent's event stream, reads the missed range itself with a plain Kafka consumer and yields those
messages before the one that revealed the gap. They run through the same handler in the same
task, so table writes go to the same partition, and they are handled before the revealing event
is acknowledged. Handlers are idempotent, so reading back a message that was in fact handled
costs a little time and has no effect.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from core.db import Connection, db
from core.positions import positions_after, record_positions, stored_position
from core.retry import retrying
from models.events import new_event
from web.metrics import GAP_MESSAGES_RECOVERED

log = logging.getLogger(__name__)
READ_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class RecoveredMessage:
    """The parts of a Faust message that agents read."""

    topic: str
    partition: int
    offset: int

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


@dataclass(frozen=True)
class RecoveredEvent:
    """A skipped message read back from Kafka, shaped like the Faust event agents handle."""

    key: bytes | None
    value: bytes
    message: RecoveredMessage

    def ack(self) -> bool:
        # Nothing to acknowledge: Faust never tracked this offset, and it is committed with
        # the event that revealed the gap, which is acknowledged after this one.
        return False


class KafkaReader:
    """Reads committed offsets and ranges of a partition outside Faust's consumer group."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None

    def _servers(self) -> list[str]:
        from kilat import cfg  # late import: kilat imports the agents that import this module

        return [host.strip() for host in cfg.kafka_brokers.split(",") if host.strip()]

    async def committed(self, group: str, tp: TopicPartition) -> int | None:
        async with self._lock:
            if self._admin is None:
                admin = AIOKafkaAdminClient(bootstrap_servers=self._servers())
                await admin.start()
                self._admin = admin
            offsets = await self._admin.list_consumer_group_offsets(group, partitions=[tp])
        meta = offsets.get(tp)
        return meta.offset if meta is not None and meta.offset >= 0 else None

    async def read(self, tp: TopicPartition, start: int, end: int) -> list[Any]:
        """The records of `tp` with offsets in [start, end), in order."""
        async with self._lock:
            if self._consumer is None:
                consumer = AIOKafkaConsumer(bootstrap_servers=self._servers(),
                                            enable_auto_commit=False,
                                            auto_offset_reset="earliest")
                await consumer.start()
                self._consumer = consumer
            consumer = self._consumer
            consumer.assign([tp])
            consumer.seek(tp, start)
            records: list[Any] = []
            deadline = asyncio.get_running_loop().time() + READ_TIMEOUT_S
            while await consumer.position(tp) < end:
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"reading {tp} [{start}, {end}) made no progress")
                batch = await consumer.getmany(tp, timeout_ms=1000, max_records=end - start)
                records.extend(r for r in batch.get(tp, []) if start <= r.offset < end)
            return records

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._admin is not None:
            await self._admin.close()
        self._consumer = self._admin = None


reader = KafkaReader()
GUARDS: dict[str, OffsetGuard] = {}
POSITION_CHECK = "kilat.position_check"


def guard_for(consumer: str, topics: Iterable[str]) -> OffsetGuard:
    """The one guard of agent `consumer` (kept across restarts of the agent's task)."""
    if consumer not in GUARDS:
        GUARDS[consumer] = OffsetGuard(consumer, topics)
    return GUARDS[consumer]


class OffsetGuard:
    """One agent's view of the partitions it consumes: where it must resume and how far it got."""

    SAVE_EVERY_S = 2.0

    def __init__(self, consumer: str, topics: Iterable[str]) -> None:
        self.consumer = consumer
        self.topics = frozenset(topics)
        self._next: dict[Any, tuple[int, int]] = {}  # tp → (generation, next offset)
        self._saved_at: dict[tuple[str, int], float] = {}

    async def _resume_offset(self, tp: Any, group: str) -> int:
        """Where this agent must resume `tp` after an assignment: its stored position, or the
        first time it sees the partition, where the group stood (stored at once, so that a
        worker stopping before its first commit still leaves a position behind)."""
        async with db.connect() as conn:
            stored = await stored_position(conn, self.consumer, tp.topic, tp.partition)
        if stored is not None:
            return stored
        committed = await reader.committed(group, TopicPartition(tp.topic, tp.partition))
        start = committed if committed is not None else 0  # no commit: Faust reads from the start
        async with db.transaction() as conn:
            await record_positions(conn, self.consumer, {(tp.topic, tp.partition): start})
        return start

    async def missed(self, event: Any) -> list[RecoveredEvent]:
        """The messages before `event` on its partition that this agent was never given."""
        from kilat import app

        message = event.message
        generation = getattr(message, "generation_id", app.consumer_generation_id)
        known = self._next.get(message.tp)
        if known is not None and known[0] == generation:
            expected = known[1]
        else:  # (re)assigned since the last message of this partition
            expected = await _retrying(lambda: self._resume_offset(message.tp, app.conf.id),
                                       self.consumer)
        # Never backwards: Faust re-seeks to the committed offset within a generation, and the
        # redelivered messages before `expected` are not a gap.
        self._next[message.tp] = (generation, max(message.offset + 1, expected))
        if message.offset <= expected:
            return []
        tp = TopicPartition(message.topic, message.partition)
        records = await _retrying(lambda: reader.read(tp, expected, message.offset),
                                  self.consumer)
        log.info("%s: read back %d message(s) of %s[%d] in [%d, %d), not recorded as handled",
                 self.consumer, len(records), message.topic, message.partition, expected,
                 message.offset)
        GAP_MESSAGES_RECOVERED.labels(self.consumer).inc(len(records))
        return [RecoveredEvent(r.key, r.value, RecoveredMessage(r.topic, r.partition, r.offset))
                for r in records]

    async def record(self, conn: Connection, events: list[Any]) -> None:
        """Store the position after `events`, inside the transaction of their effects."""
        positions = positions_after(events)
        if positions:
            await record_positions(conn, self.consumer, positions)
            now = asyncio.get_running_loop().time()
            self._saved_at.update(dict.fromkeys(positions, now))

    async def passed(self, event: Any) -> None:
        """`event` needed no transaction (ignored, duplicate, dead-lettered): store the position
        now and then, so a takeover does not read back a long run of such events."""
        msg = event.message
        key = (msg.topic, msg.partition)
        now = asyncio.get_running_loop().time()
        if now - self._saved_at.get(key, 0.0) < self.SAVE_EVERY_S:
            return
        self._saved_at[key] = now
        try:
            async with db.transaction() as conn:
                await record_positions(conn, self.consumer, positions_after([event]))
        except Exception as exc:  # only a longer read-back after a takeover if this is missed
            log.warning("%s: could not store its position (%r)", self.consumer, exc)


async def _retrying(call, consumer: str) -> Any:
    """Kafka is briefly unreachable during broker restarts: wait rather than lose the gap."""
    return await retrying(call, f"{consumer}: reading skipped messages", transient=(Exception,))


async def without_gaps(events: AsyncIterator[Any], guard: OffsetGuard) -> AsyncIterator[Any]:
    """`events` (a Faust stream's events), with every message Faust skipped put back in place."""
    async for event in events:
        for recovered in await guard.missed(event):
            yield recovered
        yield event


Send = Callable[[str, int, bytes], Awaitable[Any]]


async def check_positions(assigned: Iterable[Any], group: str, send: Send) -> int:
    """After an assignment: wake the agents that are behind on a newly assigned partition.

    An agent notices missed messages only when a message reaches it, and a partition may stay
    quiet for hours after its last (skipped) message. So where an agent's stored position is
    behind the group's committed offset, a `kilat.position_check` marker is appended to the
    partition: every agent ignores it, but it makes the behind agent read back what it missed.
    Returns the number of markers sent."""
    sent = 0
    for tp in assigned:
        guards = [g for g in GUARDS.values() if tp.topic in g.topics]
        if not guards:
            continue
        committed = await reader.committed(group, TopicPartition(tp.topic, tp.partition))
        if committed is None:
            continue
        async with db.connect() as conn:
            stored = [await stored_position(conn, g.consumer, tp.topic, tp.partition)
                      for g in guards]
        if any(pos is not None and pos < committed for pos in stored):
            await send(tp.topic, tp.partition, new_event(
                "kilat-worker", POSITION_CHECK, {"topic": tp.topic, "partition": tp.partition,
                                                 "committed": committed}).to_json())
            sent += 1
    return sent
