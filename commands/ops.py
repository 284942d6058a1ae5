"""Operator commands: record/replay topics, dead letters, table inspection.

    kilat record --topic booking.events --topic payment.events --out tests/fixtures/x.jsonl
    kilat replay --file tests/fixtures/x.jsonl [--speed 1.0] [--now]
    kilat dead-letters [--limit 20]
    kilat redrive [--offset N ...]       # all dead letters, or the ones at these DLQ offsets
    kilat table-entry --table runner-positions --key <runner user id>
"""

from __future__ import annotations

import json
from pathlib import Path

from faust.cli import option

from commands import topic_tools
from commands.progress import Progress
from kilat import app


@app.command(
    option("--topic", "topics", multiple=True, required=True, help="Logical topic (repeatable)"),
    option("--out", required=True, help="JSONL file to write"),
)
async def record(self, topics: tuple[str, ...], out: str) -> None:
    """Record the whole content of topics into a JSONL fixture."""
    progress = Progress("recorded", None)
    count = await topic_tools.record(topics, Path(out), progress)
    progress.close()
    self.say(f"recorded {count} messages from {', '.join(topics)} into {out}")


@app.command(
    option("--file", "path", required=True, help="JSONL fixture"),
    option("--speed", type=float, default=0.0, help="0 = as fast as possible, 1 = real time"),
    option("--now", "retime", is_flag=True, default=False, help="Stamp messages with now"),
)
async def replay(self, path: str, speed: float, retime: bool) -> None:
    """Replay a JSONL fixture into its topics, keeping keys, order and timestamps."""
    lines = topic_tools.load_fixture(Path(path))
    progress = Progress("replayed", len(lines))
    count = await topic_tools.replay(lines, speed=speed, keep_timestamps=not retime,
                                     progress=progress)
    progress.close()
    self.say(f"replayed {count} messages from {path}")


@app.command(option("--limit", type=int, default=50))
async def dead_letters(self, limit: int) -> None:
    """List dead-lettered events with their reasons (newest last)."""
    for entry in (await topic_tools.dead_letters())[-limit:]:
        record = entry["value"] or {}
        self.say(json.dumps({"dlq_offset": entry["offset"], "dlq_partition": entry["partition"],
                             "reason": record.get("reason"), "consumer": record.get("consumer"),
                             "topic": record.get("topic"), "key": record.get("key")}))


@app.command(option("--offset", "offsets", type=int, multiple=True,
                    help="DLQ offsets to re-drive (default: all)"))
async def redrive(self, offsets: tuple[int, ...]) -> None:
    """Re-publish dead-lettered events to their original topics (after a fix)."""
    entries = await topic_tools.dead_letters()
    if offsets:
        entries = [e for e in entries if e["offset"] in set(offsets)]
    self.say(f"re-drove {await topic_tools.redrive(entries)} events")


@app.command(option("--table", required=True), option("--key", required=True))
async def table_entry(self, table: str, key: str) -> None:
    """Show a table entry as recorded in the table's changelog."""
    self.say(json.dumps(await topic_tools.table_entry(table, key), indent=2))
