"""Liveness and readiness of a worker."""

from __future__ import annotations

import asyncio

from aiohttp import web

from core.db import db
from kilat import app
from web.http import json_response
from web.metrics import TABLES_RECOVERING

routes = web.RouteTableDef()
SERVICE = "kilat-worker"


@routes.get("/health")
async def health(_: web.Request) -> web.Response:
    return json_response({"status": "healthy", "service": SERVICE})


async def _check_kafka() -> str:
    try:
        client = app.producer._ensure_producer().client  # noqa: SLF001 - a metadata round trip
        await asyncio.wait_for(client.fetch_all_metadata(), timeout=3)
        return "ready"
    except Exception as exc:  # any failure means "not ready", with the reason shown
        return f"error: {exc!r}"


async def _check_db() -> str:
    try:
        await db.ping()
        return "ready"
    except Exception as exc:
        return f"error: {exc!r}"


def _check_tables() -> str:
    recovery = app.tables.recovery
    if app.rebalancing or app.in_recovery or not recovery.completed.is_set():
        return "recovering"
    return "ready"


async def readiness_checks() -> dict[str, str]:
    kafka, database = await asyncio.gather(_check_kafka(), _check_db())
    return {"database": database, "kafka": kafka, "tables": _check_tables()}


def tables_ready() -> bool:
    return _check_tables() == "ready"


TABLES_RECOVERING.set_function(lambda: 0.0 if tables_ready() else 1.0)


@routes.get("/readiness")
async def readiness(_: web.Request) -> web.Response:
    checks = await readiness_checks()
    ready = all(v == "ready" for v in checks.values())
    return json_response(
        {"status": "ready" if ready else "not_ready", "service": SERVICE, "checks": checks},
        200 if ready else 503,
    )

