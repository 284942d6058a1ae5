"""Tables of the event plumbing: the transactional outbox, the processed-event ledger and the
agents' durable positions."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    func,
)
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

# Per (agent, topic, partition): the offset after the last message whose effects are committed,
# written in the same transaction as those effects. Faust's own committed offset can run ahead
# of what was handled (it acknowledges messages it skips while stopping), so an agent that takes
# a partition over reads back from here (core/gaps.py).
consumer_positions = Table(
    "consumer_positions", metadata,
    Column("consumer", String(100), primary_key=True),
    Column("topic", String(255), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Idempotency-Key of a client's request (web/idempotency.py): the request's fingerprint, which
# attempt holds it, and once answered the response to replay. `state`: started (claimed, no
# effect yet), committed (the request's first transaction committed with it), done (answered).
idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("scope", String(64), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempt", String(36), nullable=False),
    Column("locked_until", DateTime(timezone=True), nullable=False),
    Column("status", Integer),
    Column("content_type", String(100)),
    Column("body", LargeBinary),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_idempotency_keys_created_at", "created_at"),
)
