"""Delivered bookings waiting for their owner (RocksDB table keyed by booking id).

An entry exists from `booking.delivery_confirmed` until the booking is completed, cancelled or
disputed; the auto-confirm timer (streams/booking.py) reads it to find the bookings whose
confirmation window has passed, so no per-booking task sleeps and nothing polls the database.

Co-partitioned with `booking.events` (same key, the app's partition count): the agent writes an
entry while it handles an event of that booking, and Faust writes the changelog to that event's
partition. Each entry also keeps that partition, so the timer can act only on the entries of
partitions this worker actively owns (standby copies are left to their active worker).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypedDict

from kilat import app, cfg


class Waiting(TypedDict):
    booking_id: str
    owner_id: str
    delivered_at: float  # epoch seconds
    partition: int


# Raw UTF-8 booking id keys, like the producers' message keys (see tables/trips.py).
delivered_bookings = app.Table(
    "delivered-bookings", default=None, key_type=bytes, partitions=cfg.topic_partitions,
    help="Delivered bookings awaiting the owner's confirmation, by booking id.",
)


def keep_waiting(entry: Waiting) -> None:
    delivered_bookings[entry["booking_id"].encode()] = dict(entry)


def stop_waiting(booking_id: str) -> None:
    """Forget a booking that is no longer waiting (a tombstone keeps the table bounded)."""
    key = booking_id.encode()
    if key in delivered_bookings:
        del delivered_bookings[key]


def waiting_entries() -> Iterator[Waiting]:
    """The local entries (RocksDB iterates only the partitions this worker actively owns)."""
    for value in list(delivered_bookings.values()):
        if value:
            yield Waiting(**value)  # type: ignore[typeddict-item]
