"""Open job-offer searches (RocksDB table keyed by booking id).

An entry exists from the `payment.escrow_held` of an unassigned booking until the booking is
accepted or cancelled, or the widest round has been offered. The job-offer agent
(streams/job_offers.py) writes it while handling an event of that booking (co-partitioned with
`booking.events`, `payment.events` and `kilat.job-offer-rounds`, like tables/confirmations.py);
the round timer only reads it, and asks for the next round with a message on
`kilat.job-offer-rounds`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypedDict

from kilat import app, cfg


class Search(TypedDict):
    booking_id: str
    booking_number: str
    pickup: list[float]         # [lat, lng]
    pet_type: str
    requirement: dict[str, Any]  # the booking's crate requirement
    round: int                  # last round offered (1 = FIRST_RADIUS_KM)
    offered: list[str]          # runner ids offered so far
    next_round_at: float        # epoch seconds
    partition: int


# Raw UTF-8 booking id keys, like the producers' message keys (see tables/trips.py).
job_offers = app.Table(
    "job-offers", default=None, key_type=bytes, partitions=cfg.topic_partitions,
    help="Open job-offer searches by booking id.",
)


def search_of(booking_id: str) -> Search | None:
    raw = job_offers.get(booking_id.encode())
    return Search(**raw) if raw else None  # type: ignore[typeddict-item]


def keep_search(entry: Search) -> None:
    job_offers[entry["booking_id"].encode()] = dict(entry)


def end_search(booking_id: str) -> None:
    key = booking_id.encode()
    if key in job_offers:
        del job_offers[key]


def open_searches() -> Iterator[Search]:
    """The local entries (RocksDB iterates only the partitions this worker actively owns)."""
    for value in list(job_offers.values()):
        if value:
            yield Search(**value)  # type: ignore[typeddict-item]
