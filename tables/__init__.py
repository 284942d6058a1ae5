"""Faust tables (RocksDB-backed, changelogged to Kafka) and their typed accessors."""

from tables import login_throttle, runners, sessions, trips  # noqa: F401
