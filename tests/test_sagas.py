"""Money sagas cannot stay stuck (streams/sagas.py): against the real platform (workers, Kafka,
PostgreSQL, the gateway) and the fake Stripe.

* Two workers; the one releasing an escrow is frozen (SIGSTOP) right after the provider
  captured, holding the payment's row lock: the other worker keeps serving, and its reconciler
  finishes the release once the database has cut the frozen transaction off — one capture, one
  release, one payout, one notification per person, also after the frozen worker wakes.
* A `booking.completed` the payment agent dead-letters raises the alert metric, and a release
  lost to a provider outage stays owed: the reconciler finishes both.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

from core.security import issue_access_token
from tests.conftest import Client
from tests.fakes.stripe import FakeStripe
from tests.platform import Platform, Proc, free_port, wait_until
from tests.test_payment import booking_event, insert_booking, outbox_events

# Fast sagas: owed for 2 s is overdue, the reconciler looks twice a second, and the database
# cuts a transaction idle for 3 s off (so a frozen worker's locks go quickly).
SAGA_ENV = {"SAGA_STEP_TIMEOUT_S": "2", "SAGA_RECONCILE_INTERVAL_S": "0.5",
            "KILAT_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS": "3000"}


@pytest.fixture
async def fake_stripe() -> AsyncIterator[FakeStripe]:
    fake = FakeStripe()
    await fake.start(free_port())
    yield fake
    await fake.stop()


def _user(p: Platform, http: aiohttp.ClientSession, role: str) -> Client:
    user_id = str(uuid.uuid4())
    c = Client(http, p.base_url, issue_access_token(user_id, f"{role}-{user_id[:8]}@kilat.test",
                                                    role))
    c.user = {"id": user_id, "role": role}
    return c


async def _held_then_completed(p: Platform, owner: Client, runner_id: str) -> tuple[str, dict]:
    """A booking paid through the gateway (escrow held), then completed in the records (as the
    owner's confirm does) — the `booking.completed` event is the test's to send."""
    booking_id = insert_booking(p, owner.user["id"], status="accepted", runner_id=runner_id)
    status, body = await owner.post("/api/v1/payments/initiate", {"booking_id": booking_id})
    assert status == 201, body
    p.sql("UPDATE bookings SET status = 'completed' WHERE id = %s", (booking_id,))
    return booking_id, body["data"]


def _completed_event(booking_id: str, owner_id: str, runner_id: str) -> tuple[str, bytes]:
    return booking_event("booking.completed", booking_id, runner_id=runner_id, owner_id=owner_id,
                         final_price_cents=150000, currency="MYR", confirmed_by="owner",
                         auto_confirmed=False)


async def _metric(worker: Proc, name: str, **labels: str) -> float:
    async with aiohttp.ClientSession() as s, s.get(worker.url + "/metrics") as r:
        text = await r.text()
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{name}(?:\{{(.*)\}})? ([0-9.e+-]+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


def _escrow(p: Platform, payment_id: str) -> dict:
    [row] = p.sql("SELECT escrow_status, runner_id, version FROM payments WHERE id = %s",
                  (payment_id,))
    return row


async def _released(p: Platform, payment_id: str, timeout: float) -> None:
    async def done() -> bool:
        return _escrow(p, payment_id)["escrow_status"] == "released"
    await wait_until(done, timeout, what="the escrow released")


def _captures(fake: FakeStripe, payment: dict) -> list:
    return fake.calls(f"/v1/payment_intents/{payment['stripe_payment_id']}/capture")


async def test_a_release_frozen_after_the_capture_is_finished_by_the_other_worker(
        fresh_platform: Platform, fake_stripe: FakeStripe, http) -> None:
    p = fresh_platform
    p.extra_env.update(SAGA_ENV)
    second_port = free_port()
    await fake_stripe.listen_also(second_port)
    # One after the other: the first declares the topics, the second joins its group.
    w1 = p.start_worker("w1", STRIPE_API_BASE=fake_stripe.base_url)
    await p.wait_ready(w1)
    w2 = p.start_worker("w2", STRIPE_API_BASE=f"http://127.0.0.1:{second_port}")
    await p.wait_ready(w2)
    await p.wait_ready(p.start_gateway(RATE_LIMIT_PER_MIN="100000"), "/health")

    owner, runner = _user(p, http, "owner"), _user(p, http, "runner")
    runner_id = runner.user["id"]
    booking_id, payment = await _held_then_completed(p, owner, runner_id)
    fake_stripe.capture_gate = asyncio.Event()
    event_id, completed = _completed_event(booking_id, owner.user["id"], runner_id)
    await p.produce("booking.events", booking_id, completed)

    await asyncio.wait_for(fake_stripe.capture_taken.wait(), 60)
    [first] = _captures(fake_stripe, payment)
    frozen, other = (w1, w2) if first.port == fake_stripe.port else (w2, w1)
    # Every worker holds the saga (a global table) before the one releasing it freezes.
    await wait_until(lambda: _metric(other, "kilat_sagas_in_flight"), 30,
                     what="the saga seen by the other worker")
    os.killpg(frozen.popen.pid, signal.SIGSTOP)
    frozen_at = time.monotonic()
    try:
        fake_stripe.capture_gate.set()  # the captured intent's answer waits in a frozen socket
        await _released(p, payment["id"], 60)
        print(f"\nreleased by the other worker {time.monotonic() - frozen_at:.1f} s after the "
              "freeze")
        assert other.alive()
        async with http.get(other.url + "/readiness") as r:
            assert r.status == 200, await r.text()
        assert await _metric(other, "kilat_sagas_driven_total", step="release",
                             kind="captured_not_released", outcome="done") == 1
    finally:
        os.killpg(frozen.popen.pid, signal.SIGCONT)

    # The woken worker's agent finds nothing left to do; everything happened once.
    async def handled() -> bool:
        return bool(p.sql("SELECT 1 FROM processed_events WHERE consumer = 'payment-bookings' "
                          "AND event_id = %s", (event_id,)))
    await wait_until(handled, 60, what="the payment agent done with the event")

    async def notified() -> bool:
        return len(p.sql("SELECT 1 FROM notifications WHERE booking_id = %s "
                         "AND event_type = 'payment.escrow_released'", (booking_id,))) >= 2
    await wait_until(notified, 60, what="owner and runner told of the release")
    await asyncio.sleep(1)  # a duplicate would have to arrive after the first ones
    assert p.sql("SELECT user_id, count(*) AS n FROM notifications WHERE booking_id = %s "
                 "AND event_type = 'payment.escrow_released' GROUP BY 1 HAVING count(*) > 1",
                 (booking_id,)) == []
    assert {c.headers["Idempotency-Key"] for c in _captures(fake_stripe, payment)} == {
        f"capture-{payment['id']}"}
    assert fake_stripe.intents[payment["stripe_payment_id"]]["captures"] == 1
    assert len(outbox_events(p, "payment.escrow_released", booking_id)) == 1
    assert _escrow(p, payment["id"]) == {"escrow_status": "released", "runner_id": runner_id,
                                         "version": 3}
    status, body = await runner.get("/api/v1/payments")
    assert status == 200 and [x["id"] for x in body["data"]] == [payment["id"]]
    assert w1.alive() and w2.alive()


async def test_dead_lettered_and_lost_releases_are_recovered(
        fresh_platform: Platform, fake_stripe: FakeStripe, http) -> None:
    p = fresh_platform
    p.extra_env.update(SAGA_ENV, STRIPE_API_BASE=fake_stripe.base_url)
    worker = await p.start_worker_and_gateway()
    owner, runner = _user(p, http, "owner"), _user(p, http, "runner")
    runner_id = runner.user["id"]

    # 1. The payment agent dead-letters the completion (its runner id is garbage): the alert
    # metric says so, and the reconciler releases to the runner the records name.
    dead_id, dead_payment = await _held_then_completed(p, owner, runner_id)
    _, garbled = _completed_event(dead_id, owner.user["id"], "not-a-runner")
    await p.produce("booking.events", dead_id, garbled)
    await wait_until(lambda: _metric(worker, "kilat_saga_dead_letters_total",
                                     consumer="payment-bookings", type="booking.completed"),
                     60, what="the saga alert")
    await _released(p, dead_payment["id"], 60)
    assert _escrow(p, dead_payment["id"])["runner_id"] == runner_id
    assert len(_captures(fake_stripe, dead_payment)) == 1

    # 2. The provider is down when the agent releases: the money stays held, the failure is
    # announced once, and the reconciler keeps trying quietly until the provider is back.
    lost_id, lost_payment = await _held_then_completed(p, owner, runner_id)
    fake_stripe.captures_down = True
    _, completed = _completed_event(lost_id, owner.user["id"], runner_id)
    await p.produce("booking.events", lost_id, completed)
    await p.wait_event("payment.events", "payment.failed", booking_id=lost_id)

    async def retried() -> bool:
        return await _metric(worker, "kilat_sagas_driven_total", kind="completed_escrow_held",
                             outcome="failed") >= 2
    await wait_until(retried, 60, what="the reconciler retrying while the provider is down")
    listed = await p.kilat("sagas")
    assert lost_id in listed and dead_id not in listed, listed
    assert _escrow(p, lost_payment["id"])["escrow_status"] == "held"
    fake_stripe.captures_down = False
    await _released(p, lost_payment["id"], 60)
    assert len(outbox_events(p, "payment.failed", lost_id)) == 1
    assert len(outbox_events(p, "payment.escrow_released", lost_id)) == 1
    assert "0 saga(s) owed" in await p.kilat("sagas")
