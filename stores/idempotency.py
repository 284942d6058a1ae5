"""Idempotency-Key records (web/idempotency.py): claim, bind to the effect, answer, release.

A record lives 24 hours; after that the same key starts afresh.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import and_, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from core.db import Connection, Row
from models.platform import idempotency_keys as keys

RETENTION = timedelta(hours=24)


def _this(scope: str, key: str):
    return and_(keys.c.scope == scope, keys.c.key == key)


def _lease(lease_s: float):
    return func.now() + text(f"interval '{float(lease_s)} seconds'")


async def claim(conn: Connection, scope: str, key: str, request_hash: str, attempt: str,
                lease_s: float) -> bool:
    """Claim a new key; False if a record exists. A record is looked for first with a plain
    read: an insert that meets an existing record would wait for the transaction of an
    attempt in progress (which holds its row) instead of answering at once."""
    if await conn.fetch_one(select(keys.c.state).where(_this(scope, key))) is not None:
        return False
    stmt = (pg_insert(keys).values(scope=scope, key=key, request_hash=request_hash,
                                   state="started", attempt=attempt, locked_until=_lease(lease_s))
            .on_conflict_do_nothing().returning(keys.c.attempt))
    return await conn.fetch_one(stmt) is not None


async def held(conn: Connection, scope: str, key: str) -> Row | None:
    """The record, locked until the transaction ends, with whether its lease ran out and
    whether it is past retention; None if an attempt's transaction holds it right now (that
    attempt is in progress)."""
    stmt = (select(keys, (keys.c.locked_until < func.now()).label("lease_expired"),
                   (keys.c.created_at < func.now() - RETENTION).label("stale"))
            .where(_this(scope, key)).with_for_update(skip_locked=True))
    return await conn.fetch_one(stmt)


async def restart(conn: Connection, scope: str, key: str, request_hash: str, attempt: str,
                  lease_s: float) -> None:
    """Reuse a record past retention for a new request."""
    await conn.execute(update(keys).where(_this(scope, key)).values(
        request_hash=request_hash, state="started", attempt=attempt,
        locked_until=_lease(lease_s), status=None, content_type=None, body=None,
        created_at=func.now()))


async def take_over(conn: Connection, scope: str, key: str, attempt: str, lease_s: float) -> None:
    """Hand a started record whose attempt vanished to a new attempt."""
    await conn.execute(update(keys).where(_this(scope, key)).values(
        attempt=attempt, locked_until=_lease(lease_s)))


async def bind(conn: Connection, scope: str, key: str, attempt: str) -> bool:
    """Mark the record as committed by this attempt, in the attempt's first transaction; False
    if another attempt took it over meanwhile (this one must not take effect)."""
    stmt = (update(keys).where(_this(scope, key), keys.c.attempt == attempt,
                               keys.c.state == "started")
            .values(state="committed").returning(keys.c.attempt))
    return await conn.fetch_one(stmt) is not None


async def answer(conn: Connection, scope: str, key: str, attempt: str, status: int,
                 content_type: str, body: bytes) -> None:
    await conn.execute(update(keys).where(_this(scope, key), keys.c.attempt == attempt).values(
        state="done", status=status, content_type=content_type, body=body))


async def release(conn: Connection, scope: str, key: str, attempt: str) -> None:
    """Forget a claim whose attempt took no effect (a retry may run it again)."""
    await conn.execute(delete(keys).where(_this(scope, key), keys.c.attempt == attempt,
                                          keys.c.state == "started"))


async def prune(conn: Connection) -> int:
    return await conn.execute(delete(keys).where(keys.c.created_at < func.now() - RETENTION))
