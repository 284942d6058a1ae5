"""Recorded journeys replayed into a fresh deployment (own database and topics, one worker).

The fixtures (`tests/fixtures/journey_*.jsonl`, written by `tests.fixtures.record_journeys`)
hold only the INPUT topics of a journey: booking.events, payment.events, runner.events. The
consumers of those events must rebuild what they own — the trip track and its waypoints, the
tracking.* events, the notifications — must not invent bookings or payments (the fresh database
has none), and a second replay of the same fixture must change nothing (exactly-once effects).

Replays use `--speed 0.25` (four times the recorded gaps): the delivery fixture holds the GPS fixes on
runner.events and `booking.delivery_confirmed` on booking.events, and the trip stage only counts
fixes that reach it before the delivery, as it did live. `--now` stamps the messages with the
current time so the broker's time-based retention never drops a replayed fixture's messages.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from commands.topic_tools import load_fixture
from tests.platform import KAFKA, ROOT, Platform, wait_until

FIXTURES = ROOT / "tests" / "fixtures"
INPUT_TOPICS = ("booking.events", "payment.events", "runner.events", "tracking.events")

# docs/notifications.md, "Recipients": event type -> roles told. Ids come from the payload
# (the fresh database has no booking row to fall back on).
RECIPIENTS: dict[str, tuple[str, ...]] = {
    "booking.requested": ("owner",), "booking.pet_picked_up": ("owner",),
    "booking.delivery_in_progress": ("owner",), "booking.delivery_confirmed": ("owner",),
    "booking.accepted": ("owner", "runner"), "booking.completed": ("owner", "runner"),
    "booking.cancelled": ("owner", "runner"), "booking.disputed": ("runner",),
    "payment.escrow_held": ("owner",), "payment.escrow_refunded": ("owner",),
    "payment.failed": ("owner",), "payment.escrow_released": ("runner", "owner"),
    "tracking.started": ("owner",), "tracking.completed": ("owner", "runner"),
}


async def replay(p: Platform, name: str) -> list[dict[str, Any]]:
    path = FIXTURES / name
    lines = load_fixture(path)
    out = await p.kilat("replay", "--file", str(path), "--speed", "0.25", "--now")
    assert f"replayed {len(lines)} messages" in out
    return lines


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lng1, lat2, lng2 = map(math.radians, (*a, *b))
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lng2 - lng1) / 2) ** 2)
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def journey(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """Booking, owner and runner ids and the GPS fixes of a recorded journey."""
    [requested] = [ln["value"]["data"] for ln in lines
                   if ln["value"]["type"] == "booking.requested"]
    [accepted] = [ln["value"]["data"] for ln in lines
                  if ln["value"]["type"] == "booking.accepted"]
    fixes = [(ln["value"]["data"]["latitude"], ln["value"]["data"]["longitude"])
             for ln in lines if ln["value"]["type"] == "runner.location_update"]
    return {"booking_id": requested["booking_id"], "owner_id": requested["owner_id"],
            "runner_id": accepted["runner_id"], "fixes": fixes,
            "types": [ln["value"]["type"] for ln in lines]}


def expected_notifications(j: dict[str, Any], tracking_types: list[str]) -> Counter:
    ids = {"owner": j["owner_id"], "runner": j["runner_id"]}
    return Counter((ids[role], type_) for type_ in [*j["types"], *tracking_types]
                   for role in RECIPIENTS.get(type_, ()))


def notifications(p: Platform) -> Counter:
    return Counter((str(r["user_id"]), r["event_type"])
                   for r in p.sql("SELECT user_id, event_type FROM notifications"))


def trip(p: Platform, booking_id: str) -> dict[str, Any] | None:
    rows = p.sql("SELECT t.status, t.total_distance_km, t.runner_id, t.owner_id, "
                 "(SELECT count(*) FROM waypoints w WHERE w.trip_track_id = t.id) AS waypoints "
                 "FROM trip_tracks t WHERE t.booking_id = %s", (booking_id,))
    return rows[0] if rows else None


async def tracking_types(p: Platform, booking_id: str) -> list[str]:
    return [e["type"] for e in await p.read_topic("tracking.events")
            if e["_key"] == booking_id and e.get("type") != "tracking.updated"]


async def consumed_everything(p: Platform) -> bool:
    """The worker's consumer group has committed the end of every input topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(p.env()["KILAT_APP_ID"])
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - topics made by others
        tps = [TopicPartition(p.topic(t), n) for t in INPUT_TOPICS
               for n in consumer.partitions_for_topic(p.topic(t)) or ()]
        if not tps:
            return False
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return all(
        end == 0 or (tp in committed and committed[tp].offset >= end)
        for tp, end in ends.items())


async def fresh_worker(p: Platform) -> None:
    worker = p.start_worker("w1")
    await p.wait_ready(worker)


async def assert_replay_invents_nothing(p: Platform) -> None:
    assert p.sql("SELECT count(*) AS n FROM bookings") == [{"n": 0}]
    assert p.sql("SELECT count(*) AS n FROM payments") == [{"n": 0}]
    assert await p.read_topic("kilat.dead-letter") == []


async def replaying_again_changes_nothing(p: Platform, name: str, bid: str, track: dict,
                                          want: Counter, tracking: list[str]) -> None:
    """The first replay's notifications arrive and it invents nothing; the same fixture replayed
    again finds every effect already there (same trip, notifications, tracking events)."""
    async def notified():
        return notifications(p) == want
    await wait_until(notified, 60, what=f"notifications {want}")
    await wait_until(lambda: consumed_everything(p), 60, what="first replay consumed")
    await assert_replay_invents_nothing(p)

    await replay(p, name)
    await wait_until(lambda: consumed_everything(p), 90, what="second replay consumed")
    assert trip(p, bid) == track
    assert notifications(p) == want
    assert await tracking_types(p, bid) == tracking
    await assert_replay_invents_nothing(p)


async def test_delivery_journey_replays_into_a_fresh_deployment(fresh_platform: Platform):
    p = fresh_platform
    await fresh_worker(p)
    j = journey(await replay(p, "journey_delivery.jsonl"))
    bid, fixes = j["booking_id"], j["fixes"]
    assert len(fixes) == 20

    await p.wait_event("tracking.events", "tracking.completed", 60, booking_id=bid)
    distance = round(sum(haversine_km(a, b) for a, b in zip(fixes, fixes[1:], strict=False)), 3)
    track = trip(p, bid)
    assert track is not None
    assert track["status"] == "completed"
    assert track["waypoints"] == len(fixes)
    assert math.isclose(float(track["total_distance_km"]), distance, abs_tol=0.0011), (
        track, distance)
    assert (str(track["runner_id"]), str(track["owner_id"])) == (j["runner_id"], j["owner_id"])
    assert await tracking_types(p, bid) == ["tracking.started", "tracking.completed"]
    updates = await p.events_of("tracking.events", "tracking.updated", booking_id=bid)
    assert len(updates) == len(fixes)

    want = expected_notifications(j, ["tracking.started", "tracking.completed"])
    assert want[(j["owner_id"], "booking.completed")] == 1
    assert sum(n for (user, _), n in want.items() if user == j["owner_id"]) == 9
    assert sum(n for (user, _), n in want.items() if user == j["runner_id"]) == 4

    await replaying_again_changes_nothing(p, "journey_delivery.jsonl", bid, track, want,
                                          ["tracking.started", "tracking.completed"])
    assert len(await p.events_of("tracking.events", "tracking.updated",
                                 booking_id=bid)) == len(fixes)


async def test_cancel_refund_journey_replays_into_a_fresh_deployment(fresh_platform: Platform):
    p = fresh_platform
    await fresh_worker(p)
    j = journey(await replay(p, "journey_cancel_refund.jsonl"))
    bid = j["booking_id"]
    assert "booking.cancelled" in j["types"] and "payment.escrow_refunded" in j["types"]

    await p.wait_event("tracking.events", "tracking.cancelled", 60, booking_id=bid)
    track = trip(p, bid)
    assert track is not None
    assert (track["status"], track["waypoints"]) == ("cancelled", 0)
    assert await tracking_types(p, bid) == ["tracking.started", "tracking.cancelled"]

    want = expected_notifications(j, ["tracking.started", "tracking.cancelled"])
    assert want[(j["owner_id"], "booking.cancelled")] == 1
    assert want[(j["runner_id"], "booking.cancelled")] == 1
    assert want[(j["owner_id"], "payment.escrow_refunded")] == 1

    await replaying_again_changes_nothing(p, "journey_cancel_refund.jsonl", bid, track, want,
                                          ["tracking.started", "tracking.cancelled"])
