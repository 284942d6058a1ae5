"""`kilat sagas`: the money steps owed right now, read from the database; `--drive` finishes
them through the same use case as the reconciler (services.payment.drive_saga).

    kilat sagas                # one JSON line per booking whose release or refund is owed
    kilat sagas --drive        # ... and drive each forward, printing what happened
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from faust.cli import option

from core.db import db
from core.stripe import stripe
from kilat import app
from services import payment as payments


def _age_s(since: datetime | None) -> float | None:
    return round((datetime.now(UTC) - since).total_seconds(), 1) if since else None


@app.command(option("--drive", is_flag=True, default=False,
                    help="Drive every owed saga forward (release or refund)"))
async def sagas(self, drive: bool) -> None:
    """List (and with --drive finish) the bookings whose release or refund is owed."""
    try:
        owed = await payments.owed_sagas()
        for saga in owed:
            line = {**saga, "since": saga["since"].isoformat() if saga["since"] else None,
                    "age_s": _age_s(saga["since"])}
            if drive:
                report = await payments.drive_saga(saga["booking_id"])
                line.update(kind=report.kind, outcome=report.outcome, reason=report.reason)
            self.say(json.dumps(line))
    finally:
        await db.close()
        await stripe().close()
    self.say(f"{len(owed)} saga(s) owed")
