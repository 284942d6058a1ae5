"""Record topics to JSONL fixtures, replay fixtures into topics, read the dead-letter topic
and changelog-backed table entries. Plain aiokafka, so they work without a running worker.

Fixture line format (one message per line, in the order it was recorded):
`{"topic": "<logical name>", "partition": 0, "offset": 12, "timestamp": 1764064805123,
  "key": "<utf-8 key>", "value": {...JSON...}}` — or `"value_b64"` for non-JSON payloads.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from commands.progress import Progress
from core.config import settings


def _physical(topic: str) -> str:
    prefix = settings().topic_prefix
    return topic if not prefix or topic.startswith(prefix) else prefix + topic


def _logical(topic: str) -> str:
    prefix = settings().topic_prefix
    return topic[len(prefix):] if prefix and topic.startswith(prefix) else topic


async def read_all(topics: Iterable[str], *, physical: bool = False, timeout: float = 10.0,
                   progress: Progress | None = None) -> list[dict[str, Any]]:
    """Every message now on `topics` (all partitions, from the beginning), as fixture lines,
    sorted by (timestamp, topic, partition, offset); counted on `progress` as they are read."""
    names = [t if physical else _physical(t) for t in topics]
    consumer = AIOKafkaConsumer(bootstrap_servers=settings().kafka_brokers,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - see new topics
        tps = [TopicPartition(n, p) for n in names for p in (consumer.partitions_for_topic(n) or ())]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        if progress is not None:
            starts = await consumer.beginning_offsets(tps)
            progress.total = sum(ends[tp] - starts[tp] for tp in tps)
        lines: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                break
            batch = await consumer.getmany(timeout_ms=200)
            if progress is not None:
                progress.advance(sum(len(records) for records in batch.values()))
            for records in batch.values():
                for rec in records:
                    line: dict[str, Any] = {
                        "topic": _logical(rec.topic), "partition": rec.partition,
                        "offset": rec.offset, "timestamp": rec.timestamp,
                        "key": rec.key.decode("utf-8", "replace") if rec.key is not None else None,
                    }
                    try:
                        line["value"] = json.loads(rec.value) if rec.value is not None else None
                    except ValueError:
                        line["value_b64"] = base64.b64encode(rec.value).decode()
                    lines.append(line)
        lines.sort(key=lambda ln: (ln["timestamp"], ln["topic"], ln["partition"], ln["offset"]))
        return lines
    finally:
        await consumer.stop()


async def record(topics: Iterable[str], out: Path, progress: Progress | None = None) -> int:
    lines = await read_all(topics, progress=progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as fh:
        for line in lines:
            fh.write(json.dumps(line, separators=(",", ":")) + "\n")
    return len(lines)


def load_fixture(path: Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def _payload(line: dict[str, Any]) -> bytes:
    if "value_b64" in line:
        return base64.b64decode(line["value_b64"])
    value = line.get("value")
    if isinstance(value, str) and line.get("raw"):
        return value.encode()
    return json.dumps(value, separators=(",", ":")).encode()


async def replay(lines: list[dict[str, Any]], *, speed: float = 0.0,
                 keep_timestamps: bool = True, progress: Progress | None = None) -> int:
    """Produce fixture lines in order, with their keys (and original timestamps unless
    `keep_timestamps=False`). `speed` > 0 reproduces the recorded gaps divided by `speed`
    (1.0 = real time); 0 sends as fast as possible. Each send is counted on `progress`."""
    producer = AIOKafkaProducer(bootstrap_servers=settings().kafka_brokers, acks="all",
                                enable_idempotence=True)
    await producer.start()
    try:
        started = time.monotonic()
        first_ts = lines[0]["timestamp"] if lines else 0
        futures = []
        for line in lines:
            if speed > 0:
                due = started + (line["timestamp"] - first_ts) / 1000.0 / speed
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            key = line.get("key")
            futures.append(await producer.send(
                _physical(line["topic"]), _payload(line),
                key=key.encode() if key is not None else None,
                timestamp_ms=line["timestamp"] if keep_timestamps else None,
            ))
            if progress is not None:
                progress.advance()
        await asyncio.gather(*futures)
        return len(lines)
    finally:
        await producer.stop()


async def dead_letters() -> list[dict[str, Any]]:
    """Entries of the dead-letter topic, oldest first, each with its DLQ offset."""
    return await read_all(["kilat.dead-letter"])


async def redrive(entries: list[dict[str, Any]]) -> int:
    """Re-publish dead-lettered messages to the topic they came from, with their key."""
    lines = []
    for entry in entries:
        record = entry["value"]
        if not isinstance(record, dict) or not record.get("topic"):
            continue
        line = {"topic": record["topic"], "key": record.get("key"),
                "timestamp": int(time.time() * 1000)}
        if "value_base64" in record:
            line["value_b64"] = record["value_base64"]
        else:
            line["value"], line["raw"] = record.get("value"), True
        lines.append(line)
    return await replay(lines, keep_timestamps=False)


async def table_entry(table: str, key: str) -> Any:
    """The latest value of `key` in a Faust table, read from its changelog topic."""
    changelog = f"{settings().app_id}-{table}-changelog"
    latest: Any = None
    for line in await read_all([changelog], physical=True):
        if line["key"] in (key, json.dumps(key)):
            latest = line.get("value")
    return latest
