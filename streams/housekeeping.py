"""Periodic clean-up of bounded records: Idempotency-Key records past their 24 hours."""

from __future__ import annotations

import logging

from core.db import db
from kilat import app
from stores import idempotency

log = logging.getLogger(__name__)


@app.timer(3600.0, name="kilat.idempotency-prune")
async def prune_idempotency_keys() -> None:
    # Every worker runs it; the delete is the same wherever it runs. A timer that raised would
    # stop the worker, so a failed run just waits for the next hour.
    try:
        async with db.transaction() as conn:
            pruned = await idempotency.prune(conn)
        if pruned:
            log.info("pruned %d idempotency keys", pruned)
    except Exception:
        log.exception("idempotency key prune failed")
