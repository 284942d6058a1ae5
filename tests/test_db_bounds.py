"""Every session the platform opens bounds its transactions (core/db.py session_options):
a session that went quiet inside a transaction (a frozen worker) is cut off by the server and
its locks released, and whoever waits on those locks gets a transient error it retries
instead of hanging or crashing. Against the real PostgreSQL."""

from __future__ import annotations

import asyncio
import time
import uuid

import psycopg2
import pytest

from core.db import Database, DatabaseUnavailable
from core.retry import retrying
from tests.platform import ADMIN_DSN, wait_until

BOUNDS = ("-c lock_timeout=300 -c statement_timeout=2000 "
          "-c idle_in_transaction_session_timeout=1500")


@pytest.fixture
def table(infra):
    name = f"bounds_{uuid.uuid4().hex[:8]}"
    with psycopg2.connect(ADMIN_DSN) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, n int NOT NULL)")
        cur.execute(f"INSERT INTO {name} VALUES (1, 0)")
    yield name
    with psycopg2.connect(ADMIN_DSN) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE {name}")


async def test_a_frozen_transaction_is_cut_off_and_the_waiter_retries(table: str) -> None:
    # The "frozen worker": takes a row lock inside a transaction, then does nothing.
    frozen = psycopg2.connect(ADMIN_DSN, options=BOUNDS)
    frozen.cursor().execute(f"SELECT n FROM {table} WHERE id = 1 FOR UPDATE")

    db = Database(ADMIN_DSN, maxsize=2, options=BOUNDS)
    failures: list[float] = []

    async def bump() -> int:
        try:
            async with db.transaction() as conn:
                return await conn.execute(f"UPDATE {table} SET n = n + 1 WHERE id = 1")
        except DatabaseUnavailable:
            failures.append(time.monotonic())
            raise

    started = time.monotonic()
    try:
        assert await retrying(bump, "bump", first_delay=0.1, max_delay=0.2) == 1
    finally:
        await db.close()
    took = time.monotonic() - started
    # Lock waits ended by lock_timeout (retried, not hung) until the server ended the frozen
    # session after 1.5 s idle in its transaction, releasing the lock.
    assert failures, "the lock wait should have timed out at least once"
    assert 1.2 < took < 6.0, took
    with pytest.raises(psycopg2.OperationalError):
        frozen.cursor().execute("SELECT 1")  # its session was terminated by the server
    frozen.close()
    with psycopg2.connect(ADMIN_DSN) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT n FROM {table} WHERE id = 1")
        assert cur.fetchone() == (1,)


async def test_a_statement_past_its_timeout_is_transient(table: str) -> None:
    db = Database(ADMIN_DSN, maxsize=1, options="-c statement_timeout=200")
    try:
        with pytest.raises(DatabaseUnavailable, match="statement timeout"):
            await db.scalar("SELECT pg_sleep(2)")
        assert await db.scalar("SELECT 41 + 1") == 42  # the pool still works afterwards
    finally:
        await db.close()


async def test_a_real_cancellation_is_still_a_cancellation(table: str) -> None:
    """Telling aiopg's converted statement timeout apart must not swallow a stopping worker's
    cancel."""
    db = Database(ADMIN_DSN, maxsize=1, options="-c statement_timeout=20000")
    marker = f"cancel_me_{uuid.uuid4().hex[:6]}"
    task = asyncio.create_task(db.scalar(f"SELECT pg_sleep(10) AS {marker}"))

    async def running() -> bool:
        with psycopg2.connect(ADMIN_DSN) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s "
                        "AND pid <> pg_backend_pid()", (f"%{marker}%",))
            return cur.fetchone()[0] == 1
    try:
        await wait_until(running, 10, what="the slow query to start")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await db.close()
