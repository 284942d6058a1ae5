"""Tables of the event plumbing: the transactional outbox and the processed-event ledger."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Index, String, Table, Text, func
from sqlalchemy.dialects.postgresql import JSONB

from models.base import metadata

outbox = Table(
    "outbox", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("topic", String(200), nullable=False),
    Column("key", Text, nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("value", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("published_at", DateTime(timezone=True)),
    Index("ix_outbox_unpublished", "id", postgresql_where="published_at IS NULL"),
)

# One row per (consumer, event id): written in the same transaction as the event's effects, so a
# redelivered or replayed event is recognised and skipped (exactly-once effects).
processed_events = Table(
    "processed_events", metadata,
    Column("consumer", String(100), primary_key=True),
    Column("event_id", String(64), primary_key=True),
    Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
