"""Operator commands run as a user would (the `kilat` CLI in a subprocess) against a platform."""

from __future__ import annotations

import json
import uuid

from models.events import new_event
from tests.platform import ROOT, Platform, wait_until

FIXTURES = ROOT / "tests" / "fixtures"


def fix(runner: str, lat: float, ts: str) -> bytes:
    return new_event("device", "runner.location_update", {
        "runner_id": runner, "latitude": lat, "longitude": 101.7, "timestamp": ts}).to_json()


async def test_malformed_burst_goes_to_dead_letter_and_changes_nothing(platform: Platform):
    before = len(await platform.read_topic("kilat.dead-letter"))
    out = await platform.kilat("replay", "--file", str(FIXTURES / "malformed_burst.jsonl"))
    assert "replayed 9 messages" in out
    keys = {"r-1", "r-2", "r-3", "r-4", "r-5", "b-1", "b-2", "p-1", "t-1"}

    async def all_dead() -> bool:
        dead = (await platform.read_topic("kilat.dead-letter"))[before:]
        missing = keys - {d["_key"] for d in dead}
        return not missing
    await wait_until(all_dead, 60, 0.5, "every malformed event dead-lettered")

    # The GPS partition moved on: a valid fix behind the burst is applied.
    runner = str(uuid.uuid4())
    await platform.produce("runner.events", runner, fix(runner, 3.15, "2026-11-25T10:00:00Z"))

    async def applied():
        return platform.sql("SELECT 1 FROM runner_locations WHERE runner_id = %s", (runner,))
    await wait_until(applied, 30, what="valid fix after the burst")
    assert platform.sql("SELECT count(*) AS n FROM runner_locations WHERE runner_id::text "
                        "LIKE 'r-%%'") == [{"n": 0}]
    listing = await platform.kilat("dead-letters", "--limit", "500")
    reasons = [json.loads(line) for line in listing.splitlines() if line.startswith("{")]
    assert any(r["key"] == "r-4" and "coordinates out of range" in r["reason"] for r in reasons)


async def test_record_then_replay_into_a_fresh_deployment(platform: Platform, fresh_platform):
    runner = str(uuid.uuid4())
    await platform.produce("runner.events", runner, fix(runner, 3.10, "2026-11-25T11:00:00Z"))
    await platform.produce("runner.events", runner, fix(runner, 3.11, "2026-11-25T11:00:01Z"))

    async def stored():
        rows = platform.sql("SELECT ST_Y(location::geometry) AS lat FROM runner_locations "
                            "WHERE runner_id = %s", (runner,))
        return rows and rows[0]["lat"] == 3.11
    await wait_until(stored, 30, what="fixes stored")
    out_file = fresh_platform.tmp / "recorded.jsonl"
    await platform.kilat("record", "--topic", "runner.events", "--out", str(out_file))
    lines = [json.loads(ln) for ln in out_file.read_text().splitlines()]
    mine = [ln for ln in lines if ln["key"] == runner]
    assert [ln["value"]["data"]["latitude"] for ln in mine] == [3.10, 3.11]

    # Replay into another deployment (own topics and database): same final state.
    other = fresh_platform
    worker = other.start_worker("w1")
    await other.wait_ready(worker)
    out = await other.kilat("replay", "--file", str(out_file))
    assert f"replayed {len(lines)} messages" in out

    async def replayed():
        rows = other.sql("SELECT ST_Y(location::geometry) AS lat FROM runner_locations "
                         "WHERE runner_id = %s", (runner,))
        return rows and rows[0]["lat"] == 3.11
    await wait_until(replayed, 60, what="replayed fixes stored")
    replayed_lines = await other.read_topic("runner.events")
    assert [ln["_key"] for ln in replayed_lines if ln["_key"] == runner] == [runner, runner]

    entry = await other.kilat("table-entry", "--table", "runner-positions", "--key", runner)
    assert json.loads(entry)["latitude"] == 3.11
