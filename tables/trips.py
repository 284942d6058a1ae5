"""Trip state per booking (RocksDB table keyed by booking id).

Co-partitioned with `booking.events` and `kilat.trip-fixes`: both are keyed by booking id and
have the app's partition count, and Faust assigns partition N of every topic with that count
(and of this table's changelog) to the same worker. So the worker that handles a booking's
lifecycle events is the one that receives its fixes and holds its trip entry.

Values are the dicts described in `domain.tracking` (status, last point, distance so far,
waypoint count). Entries must be written only while the tracking agent processes an event of
that booking: Faust writes the changelog to the partition of the current event.
"""

from __future__ import annotations

from domain.tracking import Trip
from kilat import app, cfg

# Keys are the raw UTF-8 booking id, exactly like the message keys of the source topics: a str
# key type would serialise keys as JSON ('"<id>"'), and Faust's router (tables/routing.py) would
# then hash a different key than the producers did and send lookups to the wrong worker.
trips = app.Table(
    "trips", default=None, key_type=bytes, partitions=cfg.topic_partitions,
    help="Live trip state per booking id.",
)


def trip_of(booking_id: str) -> Trip | None:
    raw = trips.get(booking_id.encode())
    return dict(raw) if raw else None


def store_trip(trip: Trip) -> None:
    trips[trip["booking_id"].encode()] = trip


def drop_trip(booking_id: str) -> None:
    """Forget a finished trip (a tombstone in the changelog keeps the table bounded)."""
    key = booking_id.encode()
    if key in trips:
        del trips[key]
