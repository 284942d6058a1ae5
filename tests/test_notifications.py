"""Notifications on the real broker: events → rows for every recipient → delivery through pyfcm,
twilio and SMTP to local fakes; quiet hours, retries, replay; the notification routes."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from domain import notification as rules
from domain.notification import quiet_until
from models.events import new_event
from tests.conftest import Client
from tests.fakes.fcm import FakeFCM
from tests.fakes.smtp import FakeSMTP
from tests.fakes.twilio import FakeTwilio
from tests.platform import Platform, wait_until
from tests.test_booking import book

DTO_KEYS = {"id", "user_id", "booking_id", "event_type", "type", "title", "body", "status",
            "is_read", "channels_sent", "channels_failed", "created_at", "updated_at"}
SOURCES = {"booking.events": "service-booking", "payment.events": "service-payment",
           "tracking.events": "service-tracking"}


@dataclass
class Env:
    p: Platform
    fcm: FakeFCM
    twilio: FakeTwilio
    smtp: FakeSMTP


@asynccontextmanager
async def notifying_platform(tmp: Path, **extra_env: str) -> AsyncIterator[Env]:
    """A platform whose worker sends push/SMS/email to fakes started on free ports."""
    fcm = await FakeFCM().start()
    twilio = await FakeTwilio().start()
    smtp = FakeSMTP().start()
    account = fcm.write_service_account(tmp / "fcm-service-account.json")
    p = Platform(tmp, extra_env={
        "FCM_ENDPOINT": f"{fcm.url}/v1/projects", "FCM_SERVICE_ACCOUNT_FILE": str(account),
        "TWILIO_BASE_URL": twilio.url, "TWILIO_ACCOUNT_SID": twilio.account_sid,
        "TWILIO_AUTH_TOKEN": twilio.auth_token, "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp.port), **extra_env,
    })
    p.create_database()
    try:
        await p.start_worker_and_gateway()
        yield Env(p, fcm, twilio, smtp)
    finally:
        p.stop_all()
        p.drop_database()
        smtp.stop()
        await fcm.stop()
        await twilio.stop()


@pytest.fixture(scope="module")
async def env(infra, tmp_path_factory) -> AsyncIterator[Env]:
    async with notifying_platform(tmp_path_factory.mktemp("notifications")) as e:
        yield e


async def sign_up(env: Env, http: aiohttp.ClientSession, role: str) -> Client:
    c = Client(http, env.p.base_url)
    status, body = await c.post("/api/v1/auth/register", {
        "email": f"{role}-{uuid.uuid4().hex[:10]}@kilat.test", "password": "Secret123!",
        "full_name": f"Test {role.title()}", "phone": "+60123456789", "role": role})
    assert status == 201, body
    c.token = body["data"]["access_token"]
    c.user = body["data"]["user"]
    return c


def contacts() -> dict[str, str]:
    n = uuid.uuid4().int
    return {"token": f"fcm-{uuid.uuid4().hex}", "phone": f"+6012{n % 10**7:07d}",
            "email": f"u{uuid.uuid4().hex[:8]}@mail.kilat.test"}


async def with_contacts(c: Client, **prefs) -> dict[str, str]:
    info = contacts()
    status, body = await c.post("/api/v1/notifications/fcm-token", {"token": info["token"]})
    assert (status, body) == (200, {"success": True, "data": {"message": "FCM token registered"}})
    status, body = await c.put("/api/v1/notifications/preferences", {
        "enable_push": True, "enable_sms": True, "enable_email": True,
        "phone_number": info["phone"], "email": info["email"], **prefs})
    assert status == 200, body
    return info


async def produce(p: Platform, topic: str, type_: str, data: dict, *, event_id: str | None = None,
                  key: str | None = None) -> str:
    event = new_event(SOURCES[topic], type_, data, event_id=event_id)
    await p.produce(topic, key or data["booking_id"], event.to_json())
    return event.id


async def notifications_of(c: Client) -> list[dict]:
    status, body = await c.get("/api/v1/notifications?limit=100")
    assert status == 200, body
    return body["data"]


def booking_ids() -> tuple[str, str]:
    return str(uuid.uuid4()), f"KL-{uuid.uuid4().hex[:8].upper()}"


async def test_booking_journey_notifies_owner_and_runner_on_every_channel(env: Env, http):
    owner, runner = await sign_up(env, http, "owner"), await sign_up(env, http, "runner")
    oc, rc = await with_contacts(owner), await with_contacts(runner)
    o, r = owner.user["id"], runner.user["id"]
    # The whole journey through the API; booking, payment and tracking emit their events.
    data = await book(owner)
    bid, number, path = data["id"], data["booking_number"], f"/api/v1/bookings/{data['id']}"
    assert (await runner.post(f"{path}/accept"))[0] == 200
    status, body = await owner.post("/api/v1/payments/initiate", {"booking_id": bid})
    assert status == 201, body
    for step in ("pickup", "deliver"):
        assert (await runner.post(f"{path}/{step}"))[0] == 200
    assert (await owner.post(f"{path}/confirm"))[0] == 200  # releases the escrow

    owner_types = {"booking.requested", "booking.accepted", "payment.escrow_held",
                   "tracking.started", "booking.pet_picked_up", "booking.delivery_confirmed",
                   "tracking.completed", "payment.escrow_released", "booking.completed"}
    runner_types = {"booking.accepted", "payment.escrow_released", "tracking.completed",
                    "booking.completed"}

    async def all_sent(c: Client, types: set[str]):
        items = await notifications_of(c)
        return ({i["type"] for i in items} == types and all(i["status"] == "sent" for i in items)
                and items)

    owner_items = await wait_until(lambda: all_sent(owner, owner_types), 60, what="owner's sent")
    runner_items = await wait_until(lambda: all_sent(runner, runner_types), 60,
                                    what="runner's sent")
    assert len(owner_items) == 9 and len(runner_items) == 4  # one per event and recipient
    for item in owner_items + runner_items:
        assert set(item) == DTO_KEYS
        assert item["channels_sent"] == ["email", "push", "sms"]
        assert item["channels_failed"] == [] and item["is_read"] is False
        assert item["booking_id"] == bid

    accepted = {i["user_id"]: i for i in owner_items + runner_items
                if i["type"] == "booking.accepted"}
    assert accepted[o]["title"] == "Runner Assigned!"
    assert accepted[o]["body"] == f"A runner has accepted your booking {number}"
    assert accepted[r]["title"] == "Job Accepted"
    payout = next(i for i in runner_items if i["type"] == "payment.escrow_released")
    assert payout["body"] == f"You earned RM 12.84 for booking {number}"  # 85 % of RM 15.10
    paid = next(i for i in owner_items if i["type"] == "payment.escrow_released")
    assert paid["body"] == (f"Your payment of RM 15.10 for booking {number} was released "
                            "to the runner")
    held = next(i for i in owner_items if i["type"] == "payment.escrow_held")
    assert held["body"] == (f"We are holding RM 15.10 for booking {number} until you confirm "
                            "the delivery")
    started = next(i for i in owner_items if i["type"] == "tracking.started")
    assert started["body"] == f"Follow your pet live for booking {number}"

    # Through the real client libraries to the providers: 1 push, 1 SMS, 1 email each.
    assert len(env.fcm.to(oc["token"])) == 9 and len(env.fcm.to(rc["token"])) == 4
    assert len(env.twilio.to(oc["phone"])) == 9 and len(env.twilio.to(rc["phone"])) == 4
    assert len(env.smtp.to(oc["email"])) == 9 and len(env.smtp.to(rc["email"])) == 4
    push = next(m for m in env.fcm.to(oc["token"]) if m.title == "Runner Assigned!")
    assert push.project == "kilat-test" and push.data["booking_id"] == bid
    assert push.data["event_type"] == "booking.accepted"
    sms = next(m for m in env.twilio.to(rc["phone"]) if number in m.body and "accepted" in m.body)
    assert sms.from_ == "+60300000000"
    mail = next(m for m in env.smtp.to(oc["email"]) if m.subject.startswith("Booking Completed"))
    assert "RM 15.10" in mail.html and mail.message["From"] == "no-reply@kilat.my"
    rows = env.p.sql("SELECT count(*) AS n, sum(attempts) AS attempts FROM notification_deliveries "
                     "d JOIN notifications n ON n.id = d.notification_id "
                     "WHERE n.user_id IN (%s, %s) AND d.status = 'sent'", (o, r))
    assert rows == [{"n": 39, "attempts": 39}]


async def test_cancellation_notifies_both_parties_and_contactless_users_still_get_rows(env, http):
    owner, runner = await sign_up(env, http, "owner"), await sign_up(env, http, "runner")
    oc = await with_contacts(owner)
    # The runner never registered any contact: the notification is still stored (in-app).
    data = await book(owner)
    path = f"/api/v1/bookings/{data['id']}"
    assert (await runner.post(f"{path}/accept"))[0] == 200
    assert (await owner.post(f"{path}/cancel", {"reason": "plans <changed>"}))[0] == 200

    async def cancelled(c: Client, status: str):
        items = [i for i in await notifications_of(c) if i["type"] == "booking.cancelled"]
        return len(items) == 1 and items[0]["status"] == status and items[0]
    mine = await wait_until(lambda: cancelled(owner, "sent"), 30, what="owner's cancellation")
    theirs = await wait_until(lambda: cancelled(runner, "skipped"), 30,
                              what="runner's cancellation")
    number = data["booking_number"]
    assert mine["body"] == f"Booking {number} was cancelled by you: plans <changed>"
    assert theirs["body"] == f"Booking {number} was cancelled by the owner: plans <changed>"
    assert theirs["channels_sent"] == [] and theirs["channels_failed"] == []
    mail = next(m for m in env.smtp.to(oc["email"]) if "Cancelled" in m.subject)
    assert "plans &lt;changed&gt;" in mail.html  # user text is escaped in HTML email


async def test_replayed_event_gives_one_notification_and_one_send(env, http):
    owner = await sign_up(env, http, "owner")
    info = contacts()
    assert (await owner.post("/api/v1/notifications/fcm-token", {"token": info["token"]}))[0] == 200
    o = owner.user["id"]
    bid, number = booking_ids()
    data = {"booking_id": bid, "booking_number": number, "owner_id": o,
            "runner_id": str(uuid.uuid4()), "estimated_price_cents": 1500}
    event_id = await produce(env.p, "booking.events", "booking.requested", data)
    await produce(env.p, "booking.events", "booking.requested", data, event_id=event_id)
    # A later event on the same partition: once it is delivered, the replay was handled.
    await produce(env.p, "booking.events", "booking.pet_picked_up", data)

    async def both_pushed():
        return len(env.fcm.to(info["token"])) >= 2
    await wait_until(both_pushed, 30, what="two pushes")
    items = await notifications_of(owner)
    assert sorted(i["type"] for i in items) == ["booking.pet_picked_up", "booking.requested"]
    titles = sorted(m.title for m in env.fcm.to(info["token"]))
    assert titles == ["Booking Created", "Pet Picked Up"]
    assert env.p.sql("SELECT count(*) AS n FROM processed_events WHERE event_id = %s",
                     (event_id,)) == [{"n": 1}]


async def test_quiet_hours_defer_deliveries_until_the_window_ends(env, http):
    owner = await sign_up(env, http, "owner")
    tz = "Asia/Kuala_Lumpur"
    local_now = datetime.now(ZoneInfo(tz))
    window_end = local_now + timedelta(seconds=8)
    quiet = {"quiet_hours_start": (local_now - timedelta(hours=1)).strftime("%H:%M"),
             "quiet_hours_end": window_end.strftime("%H:%M:%S"), "timezone": tz}
    info = await with_contacts(owner, enable_email=False, **quiet)
    status, body = await owner.get("/api/v1/notifications/preferences")
    assert status == 200 and body["data"]["quiet_hours_end"] == quiet["quiet_hours_end"]
    assert body["data"]["timezone"] == tz and body["data"]["enable_email"] is False

    bid, number = booking_ids()
    await produce(env.p, "booking.events", "booking.requested", {
        "booking_id": bid, "booking_number": number, "owner_id": owner.user["id"],
        "estimated_price_cents": 1500})

    def deliveries():
        return env.p.sql(
            "SELECT d.channel, d.status, d.attempts, d.next_attempt_at, d.sent_at "
            "FROM notification_deliveries d JOIN notifications n ON n.id = d.notification_id "
            "WHERE n.user_id = %s ORDER BY d.channel", (owner.user["id"],))

    async def deferred():
        rows = deliveries()
        return len(rows) == 2 and all(r["status"] == "deferred" for r in rows) and rows
    rows = await wait_until(deferred, 30, what="deferred deliveries")
    assert [r["channel"] for r in rows] == ["push", "sms"]
    end_ts = window_end.replace(microsecond=0).timestamp()
    for row in rows:
        assert row["next_attempt_at"].timestamp() == end_ts and row["attempts"] == 0
    assert env.fcm.to(info["token"]) == [] and env.twilio.to(info["phone"]) == []
    items = await notifications_of(owner)
    assert [i["status"] for i in items] == ["pending"]  # stored at once, never dropped

    async def delivered():
        return env.fcm.to(info["token"]) and env.twilio.to(info["phone"])
    await wait_until(delivered, 40, what="delivery after the quiet window")
    assert env.fcm.to(info["token"])[0].received_at >= end_ts
    assert env.twilio.to(info["phone"])[0].received_at >= end_ts
    await wait_until(lambda: _status_is(owner, "sent"), 10, what="notification sent")
    assert [r["status"] for r in deliveries()] == ["sent", "sent"]


async def _status_is(c: Client, status: str) -> bool:
    items = await notifications_of(c)
    return bool(items) and all(i["status"] == status for i in items)


async def test_failed_sends_are_retried_with_backoff_and_permanent_failures_recorded(env, http):
    flaky, dead = await sign_up(env, http, "owner"), await sign_up(env, http, "owner")
    flaky_info = await with_contacts(flaky, enable_sms=False, enable_email=False)
    env.fcm.fail_next[flaky_info["token"]] = 2
    dead_info = await with_contacts(dead, enable_email=False)
    env.fcm.unregistered.add(dead_info["token"])
    started = time.time()
    for c in (flaky, dead):
        bid, number = booking_ids()
        await produce(env.p, "booking.events", "booking.requested", {
            "booking_id": bid, "booking_number": number, "owner_id": c.user["id"],
            "estimated_price_cents": 2000})

    await wait_until(lambda: _status_is(flaky, "sent"), 40, what="flaky push sent")
    row = env.p.sql("SELECT d.attempts, d.last_error, d.sent_at FROM notification_deliveries d "
                    "JOIN notifications n ON n.id = d.notification_id WHERE n.user_id = %s",
                    (flaky.user["id"],))[0]
    assert row["attempts"] == 3 and "500" in row["last_error"]
    # Backoff: 1 s after the first failure, 2 s after the second.
    assert env.fcm.to(flaky_info["token"])[0].received_at - started >= 3
    assert env.fcm.attempts[flaky_info["token"]] == 3

    await wait_until(lambda: _status_is(dead, "partially_sent"), 40, what="partial send")
    item = (await notifications_of(dead))[0]
    assert item["channels_sent"] == ["sms"] and item["channels_failed"] == ["push"]
    row = env.p.sql("SELECT d.status, d.attempts, d.last_error FROM notification_deliveries d "
                    "JOIN notifications n ON n.id = d.notification_id "
                    "WHERE n.user_id = %s AND d.channel = 'push'", (dead.user["id"],))[0]
    assert row["status"] == "failed" and row["attempts"] == 1  # unregistered: not retried
    assert "not registered" in row["last_error"]
    assert env.fcm.attempts[dead_info["token"]] == 1


async def test_notification_routes_are_for_the_recipient_only(env, http):
    owner, other = await sign_up(env, http, "owner"), await sign_up(env, http, "owner")
    for _ in range(3):
        bid, number = booking_ids()
        await produce(env.p, "booking.events", "booking.requested", {
            "booking_id": bid, "booking_number": number, "owner_id": owner.user["id"],
            "estimated_price_cents": 1000})

    async def three():
        return len(await notifications_of(owner)) == 3
    await wait_until(three, 30, what="three notifications")

    status, body = await owner.get("/api/v1/notifications?page=2&limit=2")
    assert status == 200 and len(body["data"]) == 1
    assert body["pagination"] == {"total": 3, "page": 2, "limit": 2, "total_pages": 2}
    status, body = await owner.get("/api/v1/notifications?limit=500")
    assert body["pagination"]["limit"] == 20
    status, body = await other.get("/api/v1/notifications")
    assert status == 200 and body["data"] == [] and body["pagination"]["total"] == 0

    nid = body_id = (await notifications_of(owner))[0]["id"]
    status, body = await owner.get(f"/api/v1/notifications/{nid}")
    assert status == 200 and body["data"]["id"] == body_id and body["data"]["is_read"] is False
    missing = {"success": False, "error": "Notification not found",
               "detail": f"Notification with id '{nid}' was not found"}
    assert await other.get(f"/api/v1/notifications/{nid}") == (404, missing)
    assert await other.put(f"/api/v1/notifications/{nid}/read") == (404, missing)
    assert await other.post(f"/api/v1/notifications/{nid}/read") == (404, missing)
    assert await owner.get("/api/v1/notifications/nope") == (
        400, {"success": False, "error": "invalid notification ID"})
    assert (await owner.get("/api/v1/notifications", token=""))[0] == 401

    done = (200, {"success": True, "data": {"message": "notification marked as read"}})
    assert await owner.put(f"/api/v1/notifications/{nid}/read") == done
    status, body = await owner.get(f"/api/v1/notifications/{nid}")
    assert body["data"]["is_read"] is True and body["data"]["updated_at"] >= body["data"]["created_at"]
    second = (await notifications_of(owner))[1]["id"]
    assert await owner.post(f"/api/v1/notifications/{second}/read") == done  # iOS uses POST
    assert sum(i["is_read"] for i in await notifications_of(owner)) == 2


async def test_preferences_defaults_validation_and_fcm_token(env, http):
    user = await sign_up(env, http, "owner")
    uid = user.user["id"]
    # None stored yet: the original's 404 (deliveries use the defaults: every channel on).
    assert await user.get("/api/v1/notifications/preferences") == (404, {
        "success": False, "error": "NotificationPreference not found",
        "detail": f"NotificationPreference with id '{uid}' was not found"})

    bad = [
        ({"quiet_hours_start": "25:00", "quiet_hours_end": "07:00"},
         "invalid quiet_hours_start: must be a time as HH:MM"),
        ({"quiet_hours_start": "22:00"}, "quiet_hours_start and quiet_hours_end must be set together"),
        ({"quiet_hours_start": "22:00", "quiet_hours_end": "22:00"},
         "quiet_hours_start and quiet_hours_end must differ"),
        ({"timezone": "Mars/Olympus"}, "invalid timezone: use an IANA name, e.g. Asia/Kuala_Lumpur"),
        ({"phone_number": "call me"}, "invalid phone_number: use international format, e.g. +60123456789"),
        ({"email": "nope"}, "invalid email"),
    ]
    for payload, error in bad:
        assert await user.put("/api/v1/notifications/preferences", payload) == (
            400, {"success": False, "error": error}), payload
    assert await user.put("/api/v1/notifications/preferences", data="{oops",
                          headers={"Content-Type": "application/json"}) == (
        400, {"success": False, "error": "invalid request body"})

    ok = (200, {"success": True, "data": {"message": "preferences updated"}})
    assert await user.put("/api/v1/notifications/preferences", {
        "enable_push": True, "phone_number": "+60198765432", "email": "Me@Example.my",
        "quiet_hours_start": "22:00", "quiet_hours_end": "07:00", "timezone": "Europe/London"}) == ok
    # Booleans missing = false (as in the reference); other fields missing = unchanged.
    assert await user.put("/api/v1/notifications/preferences", {"enable_sms": True}) == ok
    for payload in ({}, {"token": ""}, {"token": "   "}, {"token": 42}):
        assert await user.post("/api/v1/notifications/fcm-token", payload) == (
            400, {"success": False, "error": "token is required"})
    assert (await user.post("/api/v1/notifications/fcm-token", {"token": "tok-1"}))[0] == 200
    status, body = await user.get("/api/v1/notifications/preferences")
    assert body["data"] == {
        "user_id": uid, "enable_push": False, "enable_sms": True, "enable_email": False,
        "fcm_token": "tok-1", "phone_number": "+60198765432", "email": "me@example.my",
        "quiet_hours_start": "22:00", "quiet_hours_end": "07:00", "timezone": "Europe/London"}
    assert await user.put("/api/v1/notifications/preferences", {
        "quiet_hours_start": None, "quiet_hours_end": "", "phone_number": None}) == ok
    status, body = await user.get("/api/v1/notifications/preferences")
    assert "quiet_hours_start" not in body["data"] and "phone_number" not in body["data"]
    assert body["data"]["fcm_token"] == "tok-1"


async def test_two_workers_never_send_the_same_delivery(env, http):
    """A second worker joins: both delivery timers claim rows with SKIP LOCKED, and every
    delivery still goes out exactly once."""
    w2 = env.p.start_worker("w2")
    await env.p.wait_ready(w2)
    owner = await sign_up(env, http, "owner")
    info = await with_contacts(owner, enable_email=False)
    numbers = []
    for _ in range(12):
        bid, number = booking_ids()
        numbers.append(number)
        await produce(env.p, "booking.events", "booking.requested", {
            "booking_id": bid, "booking_number": number, "owner_id": owner.user["id"],
            "estimated_price_cents": 1000})

    await wait_until(lambda: _status_is_n(owner, "sent", 12), 60, what="12 notifications sent")
    pushes = [m.body for m in env.fcm.to(info["token"])]
    sms = [m.body for m in env.twilio.to(info["phone"])]
    assert len(pushes) == 12 and len(sms) == 12
    for number in numbers:
        assert sum(number in b for b in pushes) == 1 and sum(number in b for b in sms) == 1
    env.p.stop(w2)


async def _status_is_n(c: Client, status: str, n: int) -> bool:
    items = await notifications_of(c)
    return len(items) == n and all(i["status"] == status for i in items)


# ---------------------------------------------------------------- pure rules

def test_quiet_window_math() -> None:
    kl = "Asia/Kuala_Lumpur"  # UTC+8
    at = datetime(2026, 11, 25, 15, 30, tzinfo=UTC)  # 23:30 in KL
    end = quiet_until(at, clock(22, 0), clock(7, 0), kl)  # overnight window
    assert end == datetime(2026, 11, 25, 23, 0, tzinfo=UTC)  # 07:00 next day in KL
    early = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)  # 04:00 in KL, same window
    assert quiet_until(early, clock(22, 0), clock(7, 0), kl) == end
    assert quiet_until(datetime(2026, 11, 25, 4, 0, tzinfo=UTC), clock(22, 0), clock(7, 0),
                       kl) is None  # 12:00 in KL
    assert quiet_until(at, clock(13, 0), clock(14, 0), "UTC") is None
    assert quiet_until(at, clock(15, 0), clock(16, 0), "UTC") == datetime(
        2026, 11, 25, 16, 0, tzinfo=UTC)
    assert quiet_until(at, clock(9, 0), clock(9, 0), kl) is None  # empty window
    assert quiet_until(at, None, clock(7, 0), kl) is None


def test_recipients_rendering_and_statuses() -> None:
    owner, runner = str(uuid.uuid4()), str(uuid.uuid4())
    zero = "00000000-0000-0000-0000-000000000000"
    assert rules.recipients("booking.completed", {"owner_id": owner, "runner_id": zero}) == [
        ("owner", owner)]
    # Ids missing from the payload come from the booking row.
    assert rules.recipients("payment.escrow_held", {"booking_id": "b"},
                            {"owner_id": uuid.UUID(owner)}) == [("owner", owner)]
    assert rules.recipients("booking.cancelled", {"owner_id": owner, "runner_id": runner,
                                                  "cancelled_by": owner}) == [
        ("owner", owner), ("runner", runner)]
    assert rules.recipients("tracking.updated", {"owner_id": owner}) == []
    values = {"booking_number": "KL-1", "amount": "RM 1.00"}
    template = {"owner": {"push": {"title": "T $booking_number", "body": "$nope"},
                          "sms": {"body": "S $amount"}}}
    rendered = rules.render(template, "owner", values, "booking.requested")
    assert (rendered.title, rendered.body) == ("Kilat", "S RM 1.00")  # push had a bad field
    assert rendered.variants["email"] == {"subject": "Kilat", "html": "<p>S RM 1.00</p>"}
    assert rules.overall_status([]) == "skipped"
    assert rules.overall_status(["sent", "deferred"]) == "pending"
    assert rules.overall_status(["sent", "failed"]) == "partially_sent"
    assert rules.overall_status(["failed"]) == "failed"
    assert [rules.retry_delay(n).total_seconds() for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
