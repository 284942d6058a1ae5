"""The GPS pipeline's first stage, keyed by runner (user) id.

`runner.events` → `runner-gps` agent:
* `runner.location_update`: keep the fix in `runner-positions` if newer than the last one,
  upsert the runner's PostGIS location through a batching sink, and forward the fix to the trip
  of every booking the runner is carrying (topic `kilat.trip-fixes`, keyed by booking id).
* `runner.assigned` / `runner.released`: maintain `runner-bookings`.
Malformed events go to the dead-letter topic; the partition moves on.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert as pg_insert

from core.consuming import consume_into_sink
from core.db import Connection
from core.gaps import guard_for
from core.sink import BatchingSink
from kilat import app, runner_events, trip_fixes
from models.events import MalformedEvent, decode_event, new_event
from models.runner import RunnerPosition, is_newer, parse_fix, runner_locations
from tables.runners import already_handled, position_of, runner_bookings, store_position
from web.metrics import EVENTS_PROCESSED

CONSUMER = "runner-gps"


def _point(lat: float, lng: float):
    return func.ST_SetSRID(func.ST_MakePoint(lng, lat), 4326).cast(runner_locations.c.location.type)


async def write_locations(conn: Connection, fixes: list[RunnerPosition]) -> None:
    """Upsert the newest fix per runner (a batch may hold several fixes of one runner)."""
    newest: dict[str, RunnerPosition] = {}
    for fix in fixes:
        if fix.runner_id not in newest or fix.timestamp > newest[fix.runner_id].timestamp:
            newest[fix.runner_id] = fix
    for fix in newest.values():
        stmt = pg_insert(runner_locations).values(
            runner_id=fix.runner_id, location=_point(fix.latitude, fix.longitude),
            speed_kmh=fix.speed_kmh, heading_degrees=fix.heading_degrees,
            recorded_at=datetime.fromtimestamp(fix.timestamp, UTC),
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["runner_id"],
            set_={"location": stmt.excluded.location, "speed_kmh": stmt.excluded.speed_kmh,
                  "heading_degrees": stmt.excluded.heading_degrees,
                  "recorded_at": stmt.excluded.recorded_at, "updated_at": func.now()},
            where=runner_locations.c.recorded_at < stmt.excluded.recorded_at,
        )
        await conn.execute(stmt)


location_sink = BatchingSink("runner-locations", write_locations,
                             guard=guard_for(CONSUMER, runner_events.topics))


async def forward_to_trips(fix: RunnerPosition) -> None:
    for booking_id in runner_bookings[fix.runner_id]:
        data = {**fix.asdict(), "booking_id": booking_id}
        # Deterministic id: a re-forwarded fix is recognisably the same fix downstream.
        event = new_event("kilat-gps", "trip.fix", data,
                          event_id=f"fix:{booking_id}:{fix.runner_id}:{fix.timestamp}")
        await trip_fixes.send(key=booking_id.encode(), value=event.to_json())


@app.agent(runner_events, name="kilat.runner-gps", concurrency=1)
async def runner_gps(stream):
    await consume_into_sink(stream, location_sink, handle)


async def handle(event) -> None:
    ev = decode_event(event.value)
    data = ev.data
    if ev.type == "runner.location_update":
        try:
            fix = parse_fix(data)
        except ValueError as exc:
            raise MalformedEvent(f"runner.location_update: {exc}") from exc
        if not is_newer(fix, position_of(fix.runner_id)):
            if already_handled(fix.runner_id, event.message.offset):
                # A redelivery (after a crash or a rebalance) of a fix accepted before: its
                # position reached the changelog but its forward may not have reached the
                # trip topic. Forward it again; the trip stage treats it as a replay.
                await forward_to_trips(fix)
                EVENTS_PROCESSED.labels(CONSUMER, ev.type, "replayed").inc()
            else:
                EVENTS_PROCESSED.labels(CONSUMER, ev.type, "stale").inc()
            await location_sink.ack_in_order(event)
            return
        store_position(fix, event.message.offset)
        await forward_to_trips(fix)
        await location_sink.add([fix], event)
        EVENTS_PROCESSED.labels(CONSUMER, ev.type, "ok").inc()
        return
    if ev.type in ("runner.assigned", "runner.released"):
        runner_id, booking_id = data.get("runner_id"), data.get("booking_id")
        if not runner_id or not booking_id:
            raise MalformedEvent(f"{ev.type}: payload needs runner_id and booking_id")
        current = [b for b in runner_bookings[runner_id] if b != booking_id]
        if ev.type == "runner.assigned":
            current.append(booking_id)
        runner_bookings[runner_id] = current
        EVENTS_PROCESSED.labels(CONSUMER, ev.type, "ok").inc()
    await location_sink.ack_in_order(event)


@app.timer(location_sink.max_delay, name="kilat.runner-locations-flush")
async def flush_locations() -> None:
    await location_sink.tick()

