"""Faust tables (RocksDB-backed, changelogged to Kafka) and their typed accessors."""

from tables import confirmations, runners, trips  # noqa: F401
