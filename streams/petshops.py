"""A development deployment starts with the seven Klang Valley demo pet shops, as the original
did on dev start-up, so the shop list and the nearby search are not empty on a fresh install.
Production and test deployments start empty (`kilat seed-demo` seeds them on demand)."""

from __future__ import annotations

import logging

from core.db import DatabaseUnavailable, db
from kilat import app, cfg
from stores.runner import seed_demo_shops

log = logging.getLogger(__name__)
SEED_LOCK = 0x4B494C4154  # one advisory lock id: two workers starting together seed once


@app.task
async def seed_demo_shops_in_development() -> None:
    if cfg.env != "development":
        return
    try:
        async with db.transaction() as conn:
            await conn.execute(f"SELECT pg_advisory_xact_lock({SEED_LOCK})")
            seeded = await seed_demo_shops(conn)
    except DatabaseUnavailable as exc:
        log.warning("demo pet shops not seeded: database unavailable (%s)", exc)
        return
    log.info("development start-up: %d demo pet shops seeded", seeded)
