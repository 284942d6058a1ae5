"""The trip pipeline's second stage, keyed by booking id: one agent over `booking.events` and
`kilat.trip-fixes` (co-partitioned, so a booking's lifecycle events, its fixes and its `trips`
entry live on one worker, and one agent with concurrency=1 sees them in a single sequence).

* `booking.accepted` → track row (idempotent by booking id) + trip entry + `tracking.started`.
* `trip.fix` → if the trip is active and the fix is newer than its last point: distance and
  count in the trip entry, waypoint through a batching sink, `tracking.updated` published.
* `booking.delivery_confirmed` → track completed with the distance of the stored waypoints +
  `tracking.completed`; `booking.cancelled` → track cancelled + `tracking.cancelled`.

Acknowledgement (the stream is read with noack): a lifecycle event is acked after its DB
transaction commits and the trip entry is written; a fix is acked by the sink once its waypoint
is committed (or at once when it is dropped). Crash-safety of the mix:
* lifecycle handlers are idempotent by the track's state and claim the event in
  `processed_events`; the trip entry is re-derived from the track row on every delivery, so a
  crash between the commit and the table write is repaired by the redelivery;
* a redelivered fix (not newer than the trip's last point) is not counted or published again,
  but its waypoint is queued again (ON CONFLICT DO NOTHING), so a crash between the table write
  and the sink commit cannot lose the point.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from core.config import topic_name
from core.consuming import consume_into_sink, first_time
from core.db import Connection, Row, db
from core.gaps import guard_for
from core.outbox import emit
from core.retry import retrying
from core.sink import BatchingSink
from domain import eta
from domain import tracking as rules
from kilat import app, cfg, tracking_events
from models import events as ev
from models.events import CloudEvent, MalformedEvent, decode_event, new_event, require
from models.runner import parse_fix
from stores import tracking as store
from tables.trips import drop_trip, store_trip, trip_of
from web.http import format_time
from web.metrics import EVENTS_PROCESSED

log = logging.getLogger(__name__)
CONSUMER = "tracking-trips"
SOURCE = "service-tracking"

# One channel over both topics. internal=True makes Faust declare both on start: a topic that
# does not exist yet when the worker subscribes would be left out of the assignment.
trip_inputs = app.topic(
    topic_name(ev.BOOKING_EVENTS), topic_name(ev.TRIP_FIXES),
    key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
    partitions=cfg.topic_partitions, internal=True,
)

waypoint_sink = BatchingSink("waypoints", store.write_waypoints,
                             guard=guard_for(CONSUMER, trip_inputs.topics))


def _when(value: Any) -> datetime:
    """An event's timestamp (RFC 3339), or now when absent/unreadable."""
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass
    return datetime.now(UTC)


def trip_from_track(track: Row, previous: rules.Trip | None) -> rules.Trip:
    """The trip entry that matches the track row, keeping the live figures already counted."""
    if previous is not None and previous.get("track_id") == str(track["id"]):
        trip = dict(previous)
    else:
        trip = rules.new_trip(
            booking_id=str(track["booking_id"]), track_id=str(track["id"]),
            runner_id=str(track["runner_id"]), owner_id=str(track["owner_id"] or ""),
            started_at=format_time(track["started_at"]))
    trip["runner_id"] = str(track["runner_id"])
    trip["status"] = track["status"]
    return trip


# ---------------------------------------------------------------- lifecycle handlers

def track_payload(track: Row, **extra: Any) -> dict[str, Any]:
    """The fields every tracking.* event carries, plus the event's own."""
    return {"track_id": str(track["id"]), "booking_id": str(track["booking_id"]),
            "runner_id": str(track["runner_id"]), "owner_id": str(track["owner_id"] or ""),
            **extra}


async def on_accepted(conn: Connection, event: CloudEvent, fresh: bool) -> Row | None:
    data = event.data
    require(data, "booking_id", "runner_id")
    if not fresh:
        return await store.get_track(conn, data["booking_id"])
    track, created = await store.start_track(
        conn, booking_id=data["booking_id"], runner_id=data["runner_id"],
        owner_id=data.get("owner_id") or None, started_at=_when(data.get("occurred_at")))
    if created:
        await emit(conn, ev.TRACKING_EVENTS, data["booking_id"], SOURCE, "tracking.started",
                   track_payload(track, started_at=format_time(track["started_at"])))
    return track


async def _finish(conn: Connection, event: CloudEvent, fresh: bool, status: str) -> Row | None:
    """Complete or cancel the booking's track once, and announce it."""
    booking_id = event.data["booking_id"]
    if not fresh:
        return await store.get_track(conn, booking_id)
    track, changed = await store.finish_track(conn, booking_id, status, datetime.now(UTC))
    if changed and track is not None:
        if status == rules.COMPLETED:
            type_, extra = "tracking.completed", {
                "total_distance_km": float(track["total_distance_km"]),
                "completed_at": format_time(track["completed_at"])}
        else:
            type_, extra = "tracking.cancelled", {
                "cancelled_at": format_time(track["cancelled_at"])}
        await emit(conn, ev.TRACKING_EVENTS, booking_id, SOURCE, type_,
                   track_payload(track, **extra))
    return track


async def on_delivered(conn: Connection, event: CloudEvent, fresh: bool) -> Row | None:
    return await _finish(conn, event, fresh, rules.COMPLETED)


async def on_cancelled(conn: Connection, event: CloudEvent, fresh: bool) -> Row | None:
    return await _finish(conn, event, fresh, rules.CANCELLED)


LIFECYCLE = {
    "booking.accepted": on_accepted,
    "booking.delivery_confirmed": on_delivered,
    "booking.cancelled": on_cancelled,
}


async def run_lifecycle(event: CloudEvent, handler) -> Row | None:
    """Claim the event and run its handler in one transaction; wait out transient failures."""
    async def once() -> Row | None:
        async with db.transaction() as conn:
            fresh = await first_time(conn, CONSUMER, event.id)
            return await handler(conn, event, fresh)

    return await retrying(once, f"{CONSUMER} on {event.type} {event.id}")


async def handle_lifecycle(msg, event: CloudEvent) -> None:
    require(event.data, "booking_id")
    if event.type == "booking.delivery_confirmed":
        # Fixes handled before the delivery must be in PostgreSQL before the distance is summed.
        await waypoint_sink.flush()
    track = await run_lifecycle(event, LIFECYCLE[event.type])
    if track is not None:
        booking_id = str(track["booking_id"])
        if track["status"] == rules.ACTIVE:
            trip = trip_from_track(track, trip_of(booking_id))
            if event.type == "booking.accepted":
                data = event.data
                trip = eta.with_targets(trip, eta.point(data.get("pickup_lat"), data.get("pickup_lng")),
                                        eta.point(data.get("dropoff_lat"), data.get("dropoff_lng")))
            store_trip(trip)
        else:  # finished: later fixes find no trip and are dropped
            drop_trip(booking_id)
    EVENTS_PROCESSED.labels(CONSUMER, event.type, "ok").inc()
    await waypoint_sink.ack_in_order(msg)


# ---------------------------------------------------------------- fixes

async def handle_fix(msg, event: CloudEvent) -> None:
    data = event.data
    booking_id = data.get("booking_id") or (msg.key or b"").decode()
    if not booking_id:
        raise MalformedEvent("trip.fix: payload is missing booking_id")
    try:
        fix = parse_fix(data)
    except ValueError as exc:
        raise MalformedEvent(f"trip.fix: {exc}") from exc
    trip = trip_of(booking_id)
    outcome = rules.classify_fix(trip, fix.timestamp)
    EVENTS_PROCESSED.labels(CONSUMER, event.type, outcome.value).inc()
    if outcome is rules.FixOutcome.NO_TRIP:
        await waypoint_sink.ack_in_order(msg)
        return
    assert trip is not None
    recorded_at = datetime.fromtimestamp(fix.timestamp, UTC)
    waypoint = store.waypoint_row(trip["track_id"], fix.latitude, fix.longitude, fix.speed_kmh,
                                  fix.heading_degrees, recorded_at)
    if outcome is rules.FixOutcome.REPLAYED:
        # Its arrival alert (if it raised one) may have died with a crash: publish it again
        # under the same id, which the notification agent has seen or not.
        await publish_arriving(eta.replayed_arrival(trip, fix.latitude, fix.longitude,
                                                    fix.timestamp))
        await waypoint_sink.add([waypoint], msg)
        return
    step = eta.step(trip, fix.latitude, fix.longitude, fix.timestamp, fix.speed_kmh)
    await publish_arriving(step.arriving)
    store_trip(rules.advance(step.trip, fix.latitude, fix.longitude, fix.timestamp))
    # The point is queued before publishing: a failed publish loses a live frame, not the point.
    await waypoint_sink.add([waypoint], msg)
    update = new_event(SOURCE, "tracking.updated", {
        "track_id": trip["track_id"], "booking_id": booking_id, "runner_id": fix.runner_id,
        "latitude": fix.latitude, "longitude": fix.longitude, "speed_kmh": fix.speed_kmh,
        "heading_degrees": fix.heading_degrees, "timestamp": format_time(recorded_at),
        **step.frame,
    }, event_id=rules.update_event_id(booking_id, fix.timestamp))
    try:
        await tracking_events.send(key=booking_id.encode(), value=update.to_json())
    except Exception:  # the point is counted and queued; only its live frame is lost
        log.exception("%s: could not publish tracking.updated for %s", CONSUMER, booking_id)


async def publish_arriving(payload: dict[str, Any] | None) -> None:
    """`tracking.runner_arriving`, sent directly like `tracking.updated` (one id per booking and
    leg, so a second publication is not notified twice)."""
    if payload is None:
        return
    booking_id = str(payload["booking_id"])
    event = new_event(SOURCE, "tracking.runner_arriving", payload,
                      event_id=eta.arriving_event_id(booking_id, payload["leg"]))
    try:
        await tracking_events.send(key=booking_id.encode(), value=event.to_json())
    except Exception:  # the trip goes on; a redelivery of this fix would publish it again
        log.exception("%s: could not publish tracking.runner_arriving for %s", CONSUMER,
                      booking_id)


async def handle_picked_up(msg, event: CloudEvent) -> None:
    """The pet is on board: the ETA is now to the drop-off (idempotent)."""
    require(event.data, "booking_id")
    trip = trip_of(str(event.data["booking_id"]))
    if trip is not None and trip.get("leg") != eta.DROPOFF:
        store_trip(eta.start_dropoff_leg(trip))
    EVENTS_PROCESSED.labels(CONSUMER, event.type, "ok").inc()
    await waypoint_sink.ack_in_order(msg)


# ---------------------------------------------------------------- the agent

async def handle(msg) -> None:
    event = decode_event(msg.value)
    if msg.message.topic == trip_fixes_name() and event.type == "trip.fix":
        await handle_fix(msg, event)
    elif event.type in LIFECYCLE and msg.message.topic == booking_events_name():
        await handle_lifecycle(msg, event)
    elif event.type == "booking.pet_picked_up" and msg.message.topic == booking_events_name():
        await handle_picked_up(msg, event)
    else:
        await waypoint_sink.ack_in_order(msg)


def trip_fixes_name() -> str:
    return topic_name(ev.TRIP_FIXES)


def booking_events_name() -> str:
    return topic_name(ev.BOOKING_EVENTS)


@app.agent(trip_inputs, name="kilat.tracking-trips", concurrency=1)
async def tracking_trips(stream):
    await consume_into_sink(stream, waypoint_sink, handle)


@app.timer(waypoint_sink.max_delay, name="kilat.waypoints-flush")
async def flush_waypoints() -> None:
    await waypoint_sink.tick()
