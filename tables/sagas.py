"""Money sagas in flight, held by every worker (a Faust GlobalTable).

Keyed by booking id; the value is domain.sagas.open_saga's entry: the owed step (`release` or
`refund`) and since when it is owed. The `kilat.payment-sagas` agent (streams/sagas.py) writes
it from booking.events and payment.events (both keyed by booking id, so an entry always lives in
the changelog partition of its booking's events); the reconciler timer reads it on every worker.
Global on purpose: the saga of a worker that froze while holding it stays visible to the others,
whose reconcilers finish it once the frozen worker's locks are released.

See tables/sessions.py for how faust-streaming keeps a GlobalTable on every worker
(`recovery_buffer_size=1`).
"""

from __future__ import annotations

from domain import sagas as rules
from kilat import app, cfg

sagas = app.GlobalTable(
    "payment-sagas", default=None, key_type=str, partitions=cfg.topic_partitions,
    recovery_buffer_size=1,
    help="Per booking id: the money step still owed (release or refund) and since when.",
)


def open_saga(booking_id: str, step: str, since: float) -> None:
    """Only for the agent, while it handles this booking's event (see the module docstring)."""
    sagas[booking_id] = rules.open_saga(step, booking_id, since)


def close_saga(booking_id: str) -> None:
    """Only for the agent, while it handles this booking's event."""
    if sagas.get(booking_id) is not None:
        del sagas[booking_id]


def in_flight() -> list[dict]:
    """Every saga still open, as this worker knows them."""
    return [dict(entry) for entry in sagas.values() if entry]
