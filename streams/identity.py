"""Agents of the identity domain.

`booking.events` → `identity-referrals`: when a referred user's first paid booking completes
(`booking.completed`, payload `owner_id`; paid = its escrow holds or released the owner's
money, so a booking nobody paid for earns nothing), both sides of the referral are credited once and
`identity.referral_credited` is published (for the wallet/notification side to act on).
Exactly once per event via core.consuming (processed-event ledger in the same transaction);
a second completed booking finds the referral already credited and changes nothing.

`identity.events` → `identity-sessions`: session revocations, bans and unbans
(`domain.identity.REVOCATION_EVENTS`) are folded into the global `identity-revocations` table
(tables/sessions.py), which every worker holds and checks on each authenticated request.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from core.consuming import consume
from core.db import Connection
from core.outbox import emit
from domain import identity as rules
from kilat import app, booking_events, identity_events
from models import events as ev
from models.events import CloudEvent, MalformedEvent, require
from stores import identity as store
from stores import payment as payment_store
from tables import sessions

log = logging.getLogger(__name__)
CONSUMER = "identity-referrals"
SESSIONS_CONSUMER = "identity-sessions"
SOURCE = "service-identity"


def _uuid(data: dict, key: str) -> str:
    try:
        return str(uuid.UUID(str(data[key])))
    except ValueError:
        raise MalformedEvent(f"payload field {key} is not a UUID") from None


async def credit_referral_on_completion(conn: Connection, event: CloudEvent) -> None:
    require(event.data, "owner_id", "booking_id")
    owner_id = _uuid(event.data, "owner_id")
    booking_id = _uuid(event.data, "booking_id")
    referral = await store.referral_of_referee(conn, owner_id, for_update=True)
    if referral is None or referral["referrer_credited"]:
        return
    if not await payment_store.booking_paid(conn, booking_id):
        log.info("booking %s completed unpaid: no referral reward", booking_id)
        return
    credited = await store.credit_referral(conn, referral["id"], booking_id)
    if credited is None:
        return
    log.info("referral %s credited on booking %s", referral["id"], booking_id)
    await emit(conn, ev.IDENTITY_EVENTS, credited["referrer_id"], SOURCE,
               "identity.referral_credited", {
                   "referral_id": credited["id"], "referrer_id": credited["referrer_id"],
                   "referee_id": credited["referee_id"], "booking_id": booking_id,
                   "reward_amount_cents": credited["reward_amount_cents"], "currency": "MYR",
               })


@app.agent(booking_events, name="kilat.identity-referrals", concurrency=1)
async def identity_on_bookings(stream) -> None:
    await consume(stream, CONSUMER, {"booking.completed": credit_referral_on_completion})


def _at_ms(event: CloudEvent, key: str) -> int:
    """When the revocation was decided (epoch ms): the payload's own field, or for events
    published before it existed, their `occurred_at`."""
    value = event.data.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    try:
        return int(datetime.fromisoformat(str(event.data["occurred_at"])).timestamp() * 1000)
    except (KeyError, ValueError):
        raise MalformedEvent(f"payload field {key} is missing or not epoch milliseconds") from None


async def record_revocation(conn: Connection, event: CloudEvent) -> None:
    require(event.data, "user_id")
    user_id = _uuid(event.data, "user_id")
    if event.type == rules.SESSION_REVOKED:
        require(event.data, "session_id")
    at_ms = _at_ms(event, "before_ms" if event.type == rules.SESSIONS_REVOKED else "at_ms")
    sessions.apply_event(user_id, event.type, event.data, at_ms)
    # The changelog write must be on the broker before the processed-event ledger commits:
    # a crash in between would otherwise lose the revocation for good.
    await app.producer.flush()
    log.info("%s for user %s", event.type, user_id)


@app.agent(identity_events, name="kilat.identity-sessions", concurrency=1)
async def identity_sessions(stream) -> None:
    await consume(stream, SESSIONS_CONSUMER,
                  dict.fromkeys(rules.REVOCATION_EVENTS, record_revocation))
