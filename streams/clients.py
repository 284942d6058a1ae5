"""Closes the worker's own clients of the outside world when it stops."""

from __future__ import annotations

from mode import Service

from core.gaps import reader
from core.stripe import stripe
from kilat import app


@app.service
class ClientsCloser(Service):
    """The Stripe adapter's HTTP session and the Kafka clients that read skipped messages."""

    async def on_stop(self) -> None:
        await stripe().close()
        await reader.close()
