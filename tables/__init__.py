"""Faust tables (RocksDB-backed, changelogged to Kafka) and their typed accessors."""

from tables import (  # noqa: F401
    availability,
    confirmations,
    login_throttle,
    offers,
    runners,
    sagas,
    sessions,
    trips,
)
