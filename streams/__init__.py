"""Faust agents, one module per domain. Importing this package registers them on the app."""

from streams import (  # noqa: F401
    booking,
    clients,
    housekeeping,
    identity,
    job_offers,
    login_throttle,
    monitoring,
    notification,
    outbox_relay,
    payment,
    petshops,
    positions,
    review,
    runner,
    sagas,
    tracking,
)
