"""Faust tables (RocksDB-backed, changelogged to Kafka) and their typed accessors."""

from tables import confirmations, login_throttle, runners, sagas, sessions, trips  # noqa: F401
