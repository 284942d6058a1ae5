"""Money waits for the owner (DESIGN 12), through the gateway on real Kafka and PostGIS: the
runner's deliver leaves the escrow held; the platform confirms for an owner who lets the
window pass (a Faust timer over the `delivered-bookings` table); a dispute freezes the escrow
until an admin resolves it with a release or a refund.

The platform here has a confirmation window of AUTO_CONFIRM_HOURS=0.002 (7.2 s).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from domain import booking as rules
from tests.conftest import Client, signed_in_admin
from tests.platform import Platform, wait_until
from tests.test_booking import B, booking_body

WINDOW_H = 0.002
WINDOW_S = WINDOW_H * 3600


# ================================================================== pure rules

def _delivered(**extra: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "booking_number": "BK-TEST01", "owner_id": "o",
            "runner_id": "r", "status": "delivered", "estimated_price_cents": 1510,
            "currency": "MYR", "delivered_at": datetime(2026, 11, 25, 10, tzinfo=UTC), **extra}


def test_window_rules() -> None:
    b = _delivered()
    at = b["delivered_at"]
    assert rules.auto_confirm(b, at + timedelta(hours=23, minutes=59), 24) is None
    change = rules.auto_confirm(b, at + timedelta(hours=24), 24)
    assert change is not None and change.target == "completed"
    [(_, _, type_, data)] = change.events
    assert (type_, data["confirmed_by"], data["auto_confirmed"]) == (
        "booking.completed", "platform", True)
    with pytest.raises(rules.DisputeRefused, match="window .* has closed"):
        rules.dispute(b, "scratched", at + timedelta(hours=24), 24)
    disputed = _delivered(disputed_at=at, dispute_reason="x")
    assert rules.auto_confirm(disputed, at + timedelta(days=9), 24) is None
    with pytest.raises(rules.Disputed):
        rules.complete(disputed, rules.BY_OWNER)
    with pytest.raises(rules.DisputeRefused, match="already been disputed"):
        rules.dispute(disputed, "again", at, 24)
    assert rules.resolve_dispute(disputed, "refund", "", "a", at).target == "cancelled"
    assert rules.auto_confirm(_delivered(status="completed"), at + timedelta(days=2), 24) is None


# ================================================================== platform

@pytest.fixture(scope="module")
async def money(infra, tmp_path_factory) -> AsyncIterator[Platform]:
    p = Platform(tmp_path_factory.mktemp("money"), extra_env={"AUTO_CONFIRM_HOURS": str(WINDOW_H)})
    p.create_database()
    try:
        await p.start_worker_and_gateway()
        yield p
    finally:
        p.stop_all()
        p.drop_database()


@pytest.fixture
def signup(money: Platform, http: aiohttp.ClientSession):
    async def make(role: str) -> Client:
        c = Client(http, money.base_url)
        status, body = await c.post("/api/v1/auth/register", {
            "email": f"{role}-{uuid.uuid4().hex[:10]}@kilat.test", "password": "Secret123!",
            "full_name": f"Test {role.title()}", "phone": "+60123456789", "role": role})
        assert status == 201, body
        c.token, c.user = body["data"]["access_token"], body["data"]["user"]
        return c
    return make


async def delivered_booking(owner: Client, runner: Client) -> dict[str, Any]:
    """Booked, paid into escrow, accepted, picked up and delivered through the API."""
    status, body = await owner.post(B, booking_body())
    assert status == 201, body
    bid = body["data"]["id"]
    status, body = await owner.post("/api/v1/payments/initiate", {"booking_id": bid})
    assert status == 201 and body["data"]["escrow_status"] == "held", body
    for step in ("accept", "pickup", "deliver"):
        status, body = await runner.post(f"{B}/{bid}/{step}")
        assert status == 200, (step, body)
    return body["data"]


async def escrow(owner: Client, booking_id: str) -> str:
    return (await owner.get(f"/api/v1/payments/booking/{booking_id}"))[1]["data"]["escrow_status"]


async def reaches(owner: Client, booking_id: str, status: str, escrow_status: str) -> dict:
    async def there():
        booking = (await owner.get(f"{B}/{booking_id}"))[1]["data"]
        return (booking["status"] == status and await escrow(owner, booking_id) == escrow_status
                and booking)
    return await wait_until(there, 60, what=f"{booking_id} {status} with escrow {escrow_status}")


# ================================================================== auto-confirm

async def test_platform_confirms_for_the_owner_after_the_window(money, signup) -> None:
    owner, runner = await signup("owner"), await signup("runner")
    booking = await delivered_booking(owner, runner)
    bid = booking["id"]
    assert await escrow(owner, bid) == "held"

    done = await reaches(owner, bid, "completed", "released")
    assert done["final_price_cents"] == booking["estimated_price_cents"]
    [event] = await money.wait_event("booking.events", "booking.completed", booking_id=bid)
    assert (event["data"]["confirmed_by"], event["data"]["auto_confirmed"]) == ("platform", True)
    [row] = money.sql("SELECT h.changed_by, h.reason, h.created_at, b.delivered_at, "
                      "b.completed_by FROM booking_status_history h JOIN bookings b "
                      "ON b.id = h.booking_id WHERE h.booking_id = %s "
                      "AND h.to_status = 'completed'", (bid,))
    assert row["changed_by"] is None and row["completed_by"] == "platform"
    assert row["reason"].startswith("auto-confirmed")
    assert (row["created_at"] - row["delivered_at"]).total_seconds() >= WINDOW_S
    [released] = await money.wait_event("payment.events", "payment.escrow_released",
                                        booking_id=bid)
    assert released["data"]["runner_id"] == runner.user["id"]
    # Exactly one completion and one release, and the table entry is gone.
    assert len(await money.events_of("booking.events", "booking.completed", booking_id=bid)) == 1
    assert len(await money.events_of("payment.events", "payment.escrow_released",
                                     booking_id=bid)) == 1
    # The entry was written on delivery and deleted (tombstone) on completion.
    async def entry_gone() -> bool:
        out = await money.kilat("table-entry", "--table", "delivered-bookings", "--key", bid)
        return out.strip() == "null"
    await wait_until(entry_gone, 60, 1.0, "delivered-bookings entry deleted")
    # The owner's confirm after the platform's is the state machine's 422.
    assert (await owner.post(f"{B}/{bid}/confirm"))[1]["error"] == (
        "cannot transition from 'completed' to 'completed'")
    status, body = await owner.post(f"{B}/{bid}/dispute", {"reason": "late"})
    assert (status, body["error"]) == (
        422, "only a delivered booking can be disputed (it is 'completed')")


# ================================================================== disputes

async def test_dispute_freezes_escrow_until_admin_releases(money, signup, http) -> None:
    owner, runner, other = await signup("owner"), await signup("runner"), await signup("owner")
    admin = await signed_in_admin(money, http)
    booking = await delivered_booking(owner, runner)
    bid, path = booking["id"], f"{B}/{booking['id']}"

    assert (await runner.post(f"{path}/dispute", {"reason": "x"}))[1] == {
        "error": "insufficient permissions"}
    assert await other.post(f"{path}/dispute", {"reason": "x"}) == (403, {
        "success": False, "error": "forbidden",
        "detail": "only the booking's owner can dispute a delivery"})
    status, body = await owner.post(f"{path}/dispute", {"reason": "  "})
    assert status == 400 and "'Reason' failed on the 'required' tag" in body["error"], body
    status, body = await owner.post(f"{path}/dispute", {"reason": "the crate arrived broken"})
    assert status == 200, body
    data = body["data"]
    assert data["status"] == "delivered" and data["version"] == booking["version"] + 1
    assert data["dispute"]["status"] == "open"
    assert data["dispute"]["reason"] == "the crate arrived broken"
    assert set(data["dispute"]) == {"status", "reason", "opened_at"}
    [event] = await money.wait_event("booking.events", "booking.disputed", booking_id=bid)
    assert (event["data"]["owner_id"], event["data"]["reason"]) == (
        owner.user["id"], "the crate arrived broken")
    # The runner hears that the payout is on hold.
    async def runner_told():
        status, body = await runner.get("/api/v1/notifications?limit=100")
        return [n for n in body["data"] if n["type"] == "booking.disputed"]
    [told] = await wait_until(runner_told, 60, what="runner notified of the dispute")
    assert "the crate arrived broken" in told["body"] and "on hold" in told["body"]
    status, body = await owner.post(f"{path}/dispute", {"reason": "again"})
    assert (status, body["error"]) == (422, "this delivery has already been disputed")
    assert await owner.post(f"{path}/confirm") == (409, {
        "success": False, "error": "booking is under dispute",
        "detail": "the escrow is frozen until an admin resolves the dispute"})

    # A booking delivered after this one is auto-confirmed: the window of the disputed one has
    # passed too, and it is still delivered with its escrow held.
    control = await delivered_booking(owner, runner)
    await reaches(owner, control["id"], "completed", "released")
    assert (await owner.get(path))[1]["data"]["status"] == "delivered"
    assert await escrow(owner, bid) == "held"

    resolve = f"/api/v1/admin/bookings/{bid}/resolve"
    assert (await owner.post(resolve, {"outcome": "release"}))[0] == 403
    status, body = await admin.post(resolve, {"outcome": "keep"})
    assert (status, body["error"]) == (400, "outcome must be one of: release, refund")
    assert (await admin.post(f"/api/v1/admin/bookings/{control['id']}/resolve",
                             {"outcome": "release"}))[1]["error"] == (
        "this booking has no open dispute")
    status, body = await admin.post(resolve, {"outcome": "release", "note": "photos show it fine"})
    assert status == 200, body
    assert body["data"]["status"] == "completed"
    assert body["data"]["dispute"] == {
        "status": "resolved", "reason": "the crate arrived broken",
        "opened_at": data["dispute"]["opened_at"], "outcome": "release",
        "resolved_at": body["data"]["dispute"]["resolved_at"], "note": "photos show it fine"}
    await reaches(owner, bid, "completed", "released")
    [done] = await money.wait_event("booking.events", "booking.completed", booking_id=bid)
    assert (done["data"]["confirmed_by"], done["data"]["auto_confirmed"]) == ("admin", False)
    status, body = await admin.post(resolve, {"outcome": "refund"})
    assert (status, body["error"]) == (422, "this booking has no open dispute")


async def test_dispute_resolved_with_a_refund(money, signup, http) -> None:
    owner, runner = await signup("owner"), await signup("runner")
    admin = await signed_in_admin(money, http)
    booking = await delivered_booking(owner, runner)
    bid = booking["id"]
    status, body = await owner.post(f"{B}/{bid}/dispute", {"reason": "wrong address"})
    assert status == 200, body
    status, body = await admin.post(f"/api/v1/admin/bookings/{bid}/resolve",
                                    {"outcome": "refund", "note": "runner admitted it"})
    assert status == 200, body
    assert body["data"]["status"] == "cancelled"
    assert body["data"]["cancel_note"] == "dispute resolved: refund: runner admitted it"
    assert body["data"]["dispute"]["outcome"] == "refund"
    await reaches(owner, bid, "cancelled", "refunded")
    [refund] = await money.wait_event("payment.events", "payment.escrow_refunded",
                                      booking_id=bid)
    assert refund["data"]["refund_reason"] == (
        "booking cancelled: dispute resolved: refund: runner admitted it")
    assert not await money.events_of("payment.events", "payment.escrow_released",
                                     booking_id=bid)
