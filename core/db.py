"""PostgreSQL access: SQLAlchemy 2 Core statements executed on aiopg connections.

aiopg's own `aiopg.sa` layer does not support SQLAlchemy 2, so statements are compiled here for
the psycopg2 dialect (bind processors applied, expanding parameters rendered) and run on plain
aiopg cursors. Rows come back as dicts keyed by column label, UUIDs as strings.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

import aiopg
import psycopg2
from sqlalchemy.dialects.postgresql import psycopg2 as pg_psycopg2
from sqlalchemy.sql import ClauseElement

from core.config import settings

log = logging.getLogger(__name__)

_dialect = pg_psycopg2.dialect()
Row = dict[str, Any]


class DatabaseUnavailable(RuntimeError):
    """The database cannot do this now, though it may in a moment: unreachable, restarting, a
    pool, statement or lock timeout, a serialization failure or deadlock (psycopg2 raises all
    of those as OperationalError). Views answer 503; agents retry (core/retry.py)."""


# aiopg gives up on an operation after this long (asyncio.TimeoutError, connection unusable).
OPERATION_TIMEOUT_S = 10.0


def session_options() -> str:
    """Bounds every session sets, so that no transaction holds locks for ever: a worker frozen
    mid-transaction is cut off by the server (its locks released), a lock wait or a statement
    ends with an error we retry, and the server's statement timeout fires before aiopg's
    operation timeout (a clean error instead of a connection left mid-query)."""
    cfg = settings()
    return (f"-c statement_timeout={cfg.db_statement_timeout_ms} "
            f"-c lock_timeout={cfg.db_lock_timeout_ms} "
            f"-c idle_in_transaction_session_timeout={cfg.db_idle_in_transaction_timeout_ms}")


def compile_statement(stmt: ClauseElement | str, params: Mapping[str, Any] | None = None):
    """Compile a Core statement (or raw SQL) into (sql, params) for psycopg2."""
    if isinstance(stmt, str):
        return stmt, dict(params or {})
    compiled = stmt.compile(dialect=_dialect, compile_kwargs={"render_postcompile": True})
    raw = compiled.construct_params(params)
    processors = compiled._bind_processors
    bound = {k: (processors[k](v) if k in processors else v) for k, v in raw.items()}
    return str(compiled), bound


def _plain(value: Any) -> Any:
    """UUID columns come back from psycopg2 as uuid.UUID; every layer works with canonical
    strings (as in tokens, events and JSON), so convert them once, here."""
    return str(value) if isinstance(value, uuid.UUID) else value


class Connection:
    """One database connection, optionally inside a transaction."""

    def __init__(self, raw: aiopg.Connection) -> None:
        self.raw = raw

    async def _run(self, stmt: ClauseElement | str, params: Mapping[str, Any] | None):
        sql, bound = compile_statement(stmt, params)
        cur = None
        try:
            cur = await self.raw.cursor()
            await cur.execute(sql, bound)
        except (psycopg2.OperationalError, psycopg2.InterfaceError, TimeoutError) as exc:
            if cur is not None:
                cur.close()
            raise DatabaseUnavailable(str(exc) or type(exc).__name__) from exc
        except asyncio.CancelledError:
            if cur is not None:
                cur.close()
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # a real cancellation (the worker is stopping)
            # aiopg turns the server's QueryCanceled (our statement_timeout) into a bare
            # CancelledError; nobody cancelled this task, so it is a timeout to retry.
            raise DatabaseUnavailable("canceling statement due to statement timeout") from None
        return cur

    async def execute(self, stmt: ClauseElement | str, params: Mapping[str, Any] | None = None) -> int:
        cur = await self._run(stmt, params)
        try:
            return cur.rowcount
        finally:
            cur.close()

    async def fetch_all(
        self, stmt: ClauseElement | str, params: Mapping[str, Any] | None = None
    ) -> list[Row]:
        cur = await self._run(stmt, params)
        try:
            if cur.description is None:
                return []
            names = [d.name for d in cur.description]
            return [{name: _plain(value) for name, value in zip(names, r, strict=True)}
                    for r in await cur.fetchall()]
        finally:
            cur.close()

    async def fetch_one(
        self, stmt: ClauseElement | str, params: Mapping[str, Any] | None = None
    ) -> Row | None:
        rows = await self.fetch_all(stmt, params)
        return rows[0] if rows else None

    async def scalar(self, stmt: ClauseElement | str, params: Mapping[str, Any] | None = None) -> Any:
        row = await self.fetch_one(stmt, params)
        return next(iter(row.values())) if row else None


# Run inside the first transaction the current task opens, before the caller's statements, and
# committed or rolled back with them. A request's Idempotency-Key claim binds itself to the
# request's effects this way (web/idempotency.py) without every view having to pass it along.
first_transaction_hook: ContextVar[Callable[[Connection], Awaitable[None]] | None] = ContextVar(
    "first_transaction_hook", default=None)


class Database:
    """A pool of aiopg connections with transaction helpers."""

    def __init__(self, dsn: str | None = None, *, maxsize: int = 10,
                 options: str | None = None) -> None:
        self.dsn = dsn or settings().database_url
        self.maxsize = maxsize
        self.options = options
        self._pool: aiopg.Pool | None = None
        self._lock = asyncio.Lock()

    async def pool(self) -> aiopg.Pool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    try:
                        self._pool = await aiopg.create_pool(
                            self.dsn, minsize=1, maxsize=self.maxsize,
                            timeout=OPERATION_TIMEOUT_S, pool_recycle=300,
                            options=self.options or session_options(),
                        )
                    except (TimeoutError, psycopg2.OperationalError, OSError) as exc:
                        raise DatabaseUnavailable(str(exc)) from exc
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            await self._pool.wait_closed()
            self._pool = None

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Connection]:
        pool = await self.pool()
        try:
            raw = await asyncio.wait_for(pool.acquire(), timeout=OPERATION_TIMEOUT_S)
        except (TimeoutError, psycopg2.OperationalError, OSError) as exc:
            raise DatabaseUnavailable(str(exc)) from exc
        try:
            yield Connection(raw)
        finally:
            pool.release(raw)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A connection inside BEGIN … COMMIT (ROLLBACK on any exception)."""
        async with self.connect() as conn:
            await conn.execute("BEGIN")
            try:
                hook = first_transaction_hook.get()
                if hook is not None:
                    first_transaction_hook.set(None)
                    await hook(conn)
                yield conn
            except BaseException:
                try:
                    await conn.execute("ROLLBACK")
                except Exception:  # the connection may be gone; the pool will drop it
                    log.debug("rollback failed", exc_info=True)
                raise
            else:
                await conn.execute("COMMIT")

    async def fetch_all(self, stmt: ClauseElement | str, params: Mapping[str, Any] | None = None):
        async with self.connect() as conn:
            return await conn.fetch_all(stmt, params)

    async def fetch_one(self, stmt: ClauseElement | str, params: Mapping[str, Any] | None = None):
        async with self.connect() as conn:
            return await conn.fetch_one(stmt, params)

    async def scalar(self, stmt: ClauseElement | str, params: Mapping[str, Any] | None = None):
        async with self.connect() as conn:
            return await conn.scalar(stmt, params)

    async def execute(self, stmt: ClauseElement | str, params: Mapping[str, Any] | None = None):
        async with self.connect() as conn:
            return await conn.execute(stmt, params)

    async def ping(self) -> None:
        await asyncio.wait_for(self.scalar("SELECT 1"), timeout=3)


db = Database()
"""The process-wide database (pool opened lazily on first use)."""
