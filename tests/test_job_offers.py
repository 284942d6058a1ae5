"""Job offers on the real platform: a paid, unassigned booking is pushed (FCM fake) to the five
nearest online runners whose crates fit, the radius widens after a round, offers stop on
acceptance or cancellation, and no runner is told twice."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

from domain.offers import FIRST_RADIUS_KM
from models.events import new_event
from tests.conftest import Client
from tests.platform import wait_until
from tests.test_booking import KL_A, book, pay
from tests.test_notifications import Env, notifying_platform, sign_up, with_contacts
from tests.test_runner import VEHICLE

ROUND_S = 4.0
CONSUMER = "job-offers"
KM_PER_DEGREE = 111.195
CAT_CRATE = {"size": "small", "pet_types": ["cat"], "max_weight_kg": 8, "ventilated": True}
PENANG, JOHOR_BAHRU = (5.4141, 100.3288), (1.4927, 103.7414)
BIRD_CRATE = {"size": "small", "pet_types": ["bird"], "max_weight_kg": 2, "ventilated": True}


@pytest.fixture(scope="module")
async def env(infra, tmp_path_factory) -> AsyncIterator[Env]:
    async with notifying_platform(tmp_path_factory.mktemp("offers"),
                                  JOB_OFFER_ROUND_S=str(ROUND_S)) as e:
        yield e


class Runner:
    def __init__(self, client: Client, token: str, phone: str) -> None:
        self.client, self.token, self.phone = client, token, phone

    @property
    def id(self) -> str:
        return self.client.user["id"]


async def runner_at(env: Env, http: aiohttp.ClientSession, km_north: float, crates=(CAT_CRATE,),
                    online: bool = True, pickup: tuple[float, float] = KL_A) -> Runner:
    """A runner with a profile, a push token and crates, online `km_north` of the pickup.
    (Each test uses its own town, farther apart than the widest round, so their runners and
    bookings do not meet.)"""
    c = await sign_up(env, http, "runner")
    info = await with_contacts(c)
    status, body = await c.post("/api/v1/runners", VEHICLE)
    assert status == 201, body
    for crate in crates:
        status, body = await c.post("/api/v1/runners/me/crates", crate)
        assert status == 201, body
    if online:
        status, body = await c.post("/api/v1/runners/me/online", {
            "latitude": pickup[0] + km_north / KM_PER_DEGREE, "longitude": pickup[1]})
        assert status == 200, body
    return Runner(c, info["token"], info["phone"])


def offer_pushes(env: Env, r: Runner, booking_id: str) -> list:
    return [m for m in env.fcm.to(r.token) if m.data.get("event_type") == "booking.job_offered"
            and m.data.get("booking_id") == booking_id]


async def offers_of(env: Env, booking_id: str) -> list[dict]:
    return await env.p.events_of("booking.events", "booking.job_offered", booking_id=booking_id)


async def wait_offered(env: Env, booking_id: str, runner_ids: set[str]) -> list[dict]:
    async def offered():
        events = await offers_of(env, booking_id)
        return events if {e["data"]["runner_id"] for e in events} >= runner_ids else None
    return await wait_until(offered, 60, what=f"offers to {len(runner_ids)} runners")


async def availability_has(env: Env, runners: list[Runner]) -> None:
    """The runners' online events have been turned into availability before the booking is
    paid: the search reads that table, not the database (their crates event came first)."""
    ids = {r.id for r in runners}

    async def seen():
        events = await env.p.events_of("runner.events", "runner.online")
        return ids <= {e["data"]["runner_id"] for e in events}
    await wait_until(seen, 30, what="runner.online events")


async def test_offers_go_to_the_nearest_fitting_runners_and_widen(env: Env, http) -> None:
    near = [await runner_at(env, http, km) for km in (1, 2, 3, 4, 5, 6)]
    wrong_crate = await runner_at(env, http, 0.5, crates=(BIRD_CRATE,))
    offline = await runner_at(env, http, 0.3)
    assert (await offline.client.post("/api/v1/runners/me/offline"))[0] == 200
    far = await runner_at(env, http, 15)
    very_far = await runner_at(env, http, 30)
    await availability_has(env, [*near, wrong_crate, far, very_far])

    owner = await sign_up(env, http, "owner")
    booking = await book(owner)  # a 4 kg cat: a small ventilated crate for cats fits
    bid = booking["id"]
    await pay(owner, bid)

    # Round 1: the five nearest fitting runners within 10 km, each pushed once.
    first = await wait_offered(env, bid, {r.id for r in near[:5]})
    by_runner = {e["data"]["runner_id"]: e["data"] for e in first}
    assert set(by_runner) == {r.id for r in near[:5]}
    for km, r in zip((1, 2, 3, 4, 5), near, strict=False):
        assert by_runner[r.id]["distance_km"] == pytest.approx(km, abs=0.02)
    assert {e["data"]["radius_km"] for e in first} == {FIRST_RADIUS_KM}
    for km, r in zip((1, 2, 3, 4, 5), near, strict=False):
        pushes = await wait_until(lambda r=r: asyncio.sleep(0, offer_pushes(env, r, bid)), 30,
                                  what="offer push")
        assert [(m.title, m.body) for m in pushes] == [
            ("New Job Nearby", f"New job {km:.1f} km away: a cat to carry "
                               f"(booking {booking['booking_number']})")]
        assert pushes[0].data["event_type"] == "booking.job_offered"
        assert env.twilio.to(r.phone) == []  # offers are push only

    # Nobody accepted: after a round the radius doubles; the sixth and the 15 km runner come.
    second = await wait_offered(env, bid, {near[5].id, far.id})
    widened = [e for e in second if e["data"]["round"] == 2]
    assert {e["data"]["runner_id"] for e in widened} == {near[5].id, far.id}
    assert {e["data"]["radius_km"] for e in widened} == {2 * FIRST_RADIUS_KM}

    # The 15 km runner takes it: the 30 km runner, due in the next round, is never offered it.
    status, body = await far.client.post(f"/api/v1/bookings/{bid}/accept")
    assert status == 200, body
    await asyncio.sleep(2.5 * ROUND_S)  # longer than a round: a third round would have come
    final = await offers_of(env, bid)
    assert very_far.id not in {e["data"]["runner_id"] for e in final}
    for r in (wrong_crate, offline, very_far):
        assert offer_pushes(env, r, bid) == []
    # At most one offer per runner per booking.
    ids = [e["data"]["runner_id"] for e in final]
    assert len(ids) == len(set(ids)) == 7
    for r in [*near, far]:
        assert len(offer_pushes(env, r, bid)) == 1


async def test_redelivered_payment_event_offers_nobody_twice(env: Env, http) -> None:
    r = await runner_at(env, http, 2, pickup=PENANG)
    await availability_has(env, [r])
    owner = await sign_up(env, http, "owner")
    booking = await book(owner, pickup=PENANG, dropoff=(5.43, 100.31))
    bid = booking["id"]
    await pay(owner, bid)
    await wait_offered(env, bid, {r.id})
    [held] = await env.p.events_of("payment.events", "payment.escrow_held", booking_id=bid)
    envelope = {k: held[k] for k in ("id", "source", "type", "time", "datacontenttype", "data")}
    ok = await env.p.processed_count(CONSUMER, "payment.escrow_held", "ok")
    dup = await env.p.processed_count(CONSUMER, "payment.escrow_held", "duplicate")
    # The same event again (a redelivery), and the same news under a new id (a re-emission).
    await env.p.produce("payment.events", bid, envelope)
    again = new_event("service-payment", "payment.escrow_held", held["data"],
                      event_id=str(uuid.uuid4()))
    await env.p.produce("payment.events", bid, again.to_json())

    async def both_handled() -> bool:
        count = env.p.processed_count
        return (await count(CONSUMER, "payment.escrow_held", "duplicate") >= dup + 1
                and await count(CONSUMER, "payment.escrow_held", "ok") >= ok + 1)
    await wait_until(both_handled, 30, what="both events handled")
    assert [e["data"]["runner_id"] for e in await offers_of(env, bid)] == [r.id]
    await asyncio.sleep(1.0)  # a second push would follow the outbox within a few 100 ms
    assert len(offer_pushes(env, r, bid)) == 1


async def test_cancellation_stops_the_search(env: Env, http) -> None:
    far = await runner_at(env, http, 15, pickup=JOHOR_BAHRU)  # reachable from round 2 only
    await availability_has(env, [far])
    owner = await sign_up(env, http, "owner")
    booking = await book(owner, pickup=JOHOR_BAHRU, dropoff=(1.51, 103.75))
    bid = booking["id"]
    await pay(owner, bid)
    status, body = await owner.post(f"/api/v1/bookings/{bid}/cancel", {"reason": "changed plans"})
    assert status == 200, body
    await asyncio.sleep(2.5 * ROUND_S)  # past round 2, which would have reached the runner
    assert await offers_of(env, bid) == []
    assert offer_pushes(env, far, bid) == []
