"""Faust agents, one module per domain. Importing this package registers them on the app."""

from streams import (  # noqa: F401
    booking,
    identity,
    monitoring,
    notification,
    outbox_relay,
    payment,
    review,
    runner,
    tracking,
)
