"""Faust tables (RocksDB-backed, changelogged to Kafka) and their typed accessors."""

from tables import login_throttle, runners, trips  # noqa: F401
