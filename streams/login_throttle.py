"""The sign-in throttle (issue 13 item 6), two small agents:

1. `kilat.login-failure-fanout` on `identity.events` (keyed by account): each
   `identity.login_failed {account, address}` becomes one message per throttle counter on
   `kilat.login-failures`, keyed by the counter, so every counter is counted on one partition
   whatever account or address it came from. The failure's own Kafka timestamp goes along, so
   the window is that of the failure.
2. `kilat.login-throttle` on `kilat.login-failures`: adds the failure to the counter's
   tumbling window (`login-failures`) and, when the counter reaches its limit, records the end
   of that window in the global `login-locks` table, which the login view reads on every worker.

Views cannot write Faust tables (their writes would go to whatever partition the worker
happens to be processing); they publish the failure and these agents do the writing.
Counting is at-least-once: a failure redelivered after a crash may count twice, which only
makes the throttle slightly stricter.
"""

from __future__ import annotations

import logging

from core.config import settings
from core.consuming import dead_letter
from domain import identity as rules
from kilat import app, identity_events, login_failures
from models.events import MalformedEvent, decode_event
from tables.login_throttle import login_failures as failures
from tables.login_throttle import login_locks, window_end

log = logging.getLogger(__name__)
FANOUT = "login-failure-fanout"
COUNTER = "login-throttle"
LOGIN_FAILED = "identity.login_failed"


def limits() -> rules.ThrottleLimits:
    cfg = settings()
    return rules.ThrottleLimits(account_at_address=cfg.login_max_failures,
                                address=cfg.login_max_failures_per_address,
                                account=cfg.login_max_failures_per_account)


@app.agent(identity_events, name="kilat.login-failure-fanout", concurrency=1)
async def fan_out_login_failures(stream) -> None:
    async for event_msg in stream.events():
        msg = event_msg.message
        where = {"key": event_msg.key, "topic": msg.topic, "partition": msg.partition,
                 "offset": msg.offset}
        try:
            event = decode_event(event_msg.value)
            if event.type != LOGIN_FAILED:
                continue
            account, address = event.data.get("account"), event.data.get("address")
            if not isinstance(account, str) or not account or not isinstance(address, str):
                raise MalformedEvent("login_failed needs text fields account and address")
        except MalformedEvent as exc:
            await dead_letter(str(exc), FANOUT, event_msg.value, **where)
            continue
        for counter in rules.login_counters(account, address):
            await login_failures.send(key=counter.encode(), value=b"1",
                                      timestamp=msg.timestamp)


@app.agent(login_failures, name="kilat.login-throttle", concurrency=1)
async def count_login_failures(stream) -> None:
    async for event_msg in stream.events():
        counter = (event_msg.key or b"").decode("utf-8", "replace")
        if not counter:
            continue
        failures[counter] += 1
        count = failures[counter].current()
        if rules.locks_after(counter, count, limits()):
            ends = window_end(event_msg.message.timestamp)
            if (login_locks.get(counter) or 0) < ends:
                log.info("sign-in locked for %s until %.0f (%d failures)", counter, ends, count)
                login_locks[counter] = ends
