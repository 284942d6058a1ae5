"""Job offers: a paid, unassigned booking is pushed to the nearest online runners whose crates
fit the pet, widening the search each round nobody accepts.

* `kilat.runner-availability` (runner.events, keyed by runner): keeps the `runner-availability`
  global table (online, rough position, crates) from `runner.online` / `runner.offline` /
  `runner.crates_updated` / `runner.location_update`, rewriting a position only when the
  runner moved (domain.offers.apply_runner_event). It is a
  derived view that repairs itself: a fix marks its runner online, and each online/crates event
  carries the whole state, so nothing is ledgered here.
* `kilat.job-offers` (payment.events + booking.events + kilat.job-offer-rounds, all keyed by
  booking id, one sequence per booking): `payment.escrow_held` of a booking still `requested`
  opens a search and offers round 1 (FIRST_RADIUS_KM); a round message offers the next round
  at a wider radius; `booking.accepted` / `booking.cancelled` end the search. Each offer is a
  `booking.job_offered` event (through the outbox) that the notification agent turns into the
  runner's push "New job N km away".
* Timer `kilat.job-offer-rounds`: for the searches of partitions this worker actively owns
  whose round has waited JOB_OFFER_ROUND_S, sends the round message (the timer never writes the
  table: Faust writes a table's changelog to the partition of the event being handled).

Exactly once: events go through `core.consuming.consume` (processed-event ledger), and each
offer also claims the id (booking, runner) in the ledger in the transaction that enqueues it,
so a runner is offered a booking at most once even if the search entry was lost or a round
handled twice.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from core.config import settings, topic_name
from core.consuming import consume, first_time
from core.db import Connection
from core.outbox import emit
from domain import booking as booking_rules
from domain import offers as rules
from kilat import app, cfg, job_offer_rounds, runner_events
from models import events as ev
from models.events import CloudEvent, MalformedEvent, decode_event, new_event, require_uuid
from stores import booking as booking_store
from streams.partitions import (
    actively_owned,
    changelog_written,
    current_partition,
    tables_settled,
)
from tables.availability import all_runners, availability_of, keep_availability
from tables.offers import Search, end_search, keep_search, open_searches, search_of

log = logging.getLogger(__name__)
CONSUMER = "job-offers"
OFFERED = "job-offers:offered"  # ledger namespace of (booking, runner) offers
SOURCE = "service-booking"
ROUND = "booking.offer_round"
_ROUND_NS = uuid.UUID("5a0f3b8e-1c2d-4e6f-8a9b-0c1d2e3f4a5b")

# ---------------------------------------------------------------- availability


@app.agent(runner_events, name="kilat.runner-availability", concurrency=1)
async def runner_availability(stream) -> None:
    # One event at a time: the table write must happen while its event is current (see
    # tables/availability.py). Most fixes are dropped by the cheap "moved?" test before that.
    async for event_msg in stream.events():
        try:
            event = decode_event(event_msg.value)
        except MalformedEvent:
            continue  # the GPS stage dead-letters it with the reason
        runner_id = event.data.get("runner_id")
        if not isinstance(runner_id, str) or not runner_id:
            continue
        entry = rules.apply_runner_event(availability_of(runner_id), runner_id, event.type,
                                         event.data, time.time())
        if entry is not None:
            keep_availability(entry)


# ---------------------------------------------------------------- offers

offer_inputs = app.topic(
    topic_name(ev.PAYMENT_EVENTS), topic_name(ev.BOOKING_EVENTS), topic_name(ev.JOB_OFFER_ROUNDS),
    key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
    partitions=cfg.topic_partitions, internal=True,
)


def open_for_offers(booking: dict[str, Any] | None) -> bool:
    return (booking is not None and booking["status"] == booking_rules.REQUESTED
            and not booking.get("runner_id"))


async def offer(conn: Connection, search: Search, candidate: rules.Candidate,
                round_no: int) -> bool:
    """Tell one runner about the booking, once ever per booking and runner."""
    event_id = rules.offer_event_id(search["booking_id"], candidate.runner_id)
    if not await first_time(conn, OFFERED, event_id):
        return False
    await emit(conn, ev.BOOKING_EVENTS, search["booking_id"], SOURCE, "booking.job_offered", {
        "booking_id": search["booking_id"], "booking_number": search["booking_number"],
        "runner_id": candidate.runner_id, "pet_type": search["pet_type"],
        "distance_km": round(candidate.distance_km, 2),
        "distance_text": rules.distance_text(candidate.distance_km),
        "radius_km": rules.radius_for_round(round_no), "round": round_no,
    }, event_id=event_id)
    return True


async def run_round(conn: Connection, search: Search, round_no: int) -> int:
    """Offer the booking to the nearest fitting runners not offered yet; keep or end the
    search. Returns how many runners were told."""
    found = rules.nearest_fitting(
        all_runners(), (search["pickup"][0], search["pickup"][1]), search["pet_type"],
        search["requirement"], rules.radius_for_round(round_no), set(search["offered"]))
    told = 0
    for candidate in found:
        told += await offer(conn, search, candidate, round_no)
    search = Search(**{**search, "round": round_no,
                       "offered": search["offered"] + [c.runner_id for c in found],
                       "next_round_at": time.time() + settings().job_offer_round_s})
    if rules.last_round(round_no):
        end_search(search["booking_id"])
    else:
        keep_search(search)
    await changelog_written()
    log.info("booking %s: round %d (%.0f km) offered to %d runner(s)", search["booking_id"],
             round_no, rules.radius_for_round(round_no), told)
    return told


async def on_paid(conn: Connection, event: CloudEvent) -> None:
    booking_id = require_uuid(event.data, "booking_id")
    booking = await booking_store.get_booking(conn, booking_id)
    if not open_for_offers(booking) or search_of(booking_id) is not None:
        return
    assert booking is not None
    pickup, pet = booking["pickup_address"], booking["pet_spec"]
    search = Search(booking_id=booking_id, booking_number=booking["booking_number"],
                    pickup=[float(pickup["latitude"]), float(pickup["longitude"])],
                    pet_type=str(pet.get("pet_type") or ""),
                    requirement=dict(booking["crate_requirement"] or {}), round=0, offered=[],
                    next_round_at=0.0, partition=current_partition())
    await run_round(conn, search, 1)


async def on_round(conn: Connection, event: CloudEvent) -> None:
    booking_id = require_uuid(event.data, "booking_id")
    search = search_of(booking_id)
    round_no = event.data.get("round")
    if search is None or round_no != search["round"] + 1:
        return  # the search ended, or this round was already offered
    if not open_for_offers(await booking_store.get_booking(conn, booking_id)):
        end_search(booking_id)
        await changelog_written()
        return
    await run_round(conn, search, round_no)


async def on_settled(conn: Connection, event: CloudEvent) -> None:
    """Accepted or cancelled: no more offers."""
    end_search(require_uuid(event.data, "booking_id"))
    await changelog_written()


@app.agent(offer_inputs, name="kilat.job-offers", concurrency=1)
async def job_offers(stream) -> None:
    await consume(stream, CONSUMER, {
        "payment.escrow_held": on_paid,
        ROUND: on_round,
        "booking.accepted": on_settled,
        "booking.cancelled": on_settled,
    })


# ---------------------------------------------------------------- rounds

def _tick_s() -> float:
    """A quarter of a round, between 0.25 s (tests use rounds of seconds) and 15 s."""
    return max(0.25, min(settings().job_offer_round_s / 4, 15.0))


def round_event(booking_id: str, round_no: int) -> CloudEvent:
    """The request for a round; one id per booking and round, so repeats are handled once."""
    return new_event(SOURCE, ROUND, {"booking_id": booking_id, "round": round_no},
                     event_id=str(uuid.uuid5(_ROUND_NS, f"{booking_id}:{round_no}")))


@app.timer(_tick_s(), name="kilat.job-offer-rounds")
async def ask_for_rounds() -> None:
    if not tables_settled():
        return
    now = time.time()
    due = [s for s in open_searches() if s["next_round_at"] <= now]
    if not due:
        return
    mine = actively_owned(ev.JOB_OFFER_ROUNDS, {s["partition"] for s in due})
    for search in due:
        if search["partition"] in mine:
            event = round_event(search["booking_id"], search["round"] + 1)
            await job_offer_rounds.send(key=search["booking_id"].encode(),
                                        value=event.to_json())
