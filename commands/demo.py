"""Demo data and a live delivery, driven through the public API like the apps do.

    kilat seed-demo [--base-url http://localhost:8080] [--runners 8]
    kilat demo      [--base-url http://localhost:8080] [--interval 1.0]

`seed-demo` adds the demo pet shops, an owner and runners online around Kuala Lumpur, plus the
fixed test accounts the mobile apps ship with (`SEED_ACCOUNTS`; created once, reused after).
`demo` books a delivery, pays, accepts, picks up, streams the recorded 5 km GPS trace through
`POST /api/v1/runners/me/location` and delivers, printing what to open while it runs (among
it the share link's live trip page, for a browser).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from faust.cli import option

from core.db import db
from kilat import app
from stores.runner import seed_demo_shops

TRACE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "gps_trace_5km.jsonl"
KL = (3.139, 101.6869)
PASSWORD = "DemoPass123!"
# The apps' built-in test logins (the iOS runner app's `runner.test@kilat.my`).
SEED_ACCOUNTS = (
    {"email": "runner.test@kilat.my", "password": "TestRunner123!", "role": "runner",
     "full_name": "Test Runner", "phone": "+60120000001"},
    {"email": "owner.test@kilat.my", "password": "TestOwner123!", "role": "owner",
     "full_name": "Test Owner", "phone": "+60120000002"},
)


class Api:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base.rstrip("/")
        self.token: str | None = None

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.session.request(method, self.base + path, json=body,
                                        headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        status, data = await self.request(method, path, body)
        if status >= 400:
            raise RuntimeError(f"{method} {path} -> {status}: {data}")
        return data.get("data") if isinstance(data, dict) else data

    async def sign_up(self, role: str, name: str) -> dict:
        email = f"{role}.{uuid.uuid4().hex[:6]}@demo.kilat.my"
        data = await self.call("POST", "/api/v1/auth/register", {
            "email": email, "password": PASSWORD, "full_name": name, "role": role,
            "phone": "+60123456789"})
        self.token = data["access_token"]
        return {"email": email, **data["user"]}


async def ensure_account(api: Api, account: dict[str, str]) -> dict[str, Any]:
    """Sign up, or log in when the account already exists (409): safe to run again."""
    status, data = await api.request("POST", "/api/v1/auth/register", account)
    if status == 409:
        data = {"data": await api.call("POST", "/api/v1/auth/login", {
            "email": account["email"], "password": account["password"]})}
    elif status >= 400:
        raise RuntimeError(f"register {account['email']} -> {status}: {data}")
    api.token = data["data"]["access_token"]
    return data["data"]["user"]


async def ensure_test_accounts(session: aiohttp.ClientSession, base: str) -> list[str]:
    """The apps' test logins; the runner gets a runner profile and goes online in KL."""
    for account in SEED_ACCOUNTS:
        api = Api(session, base)
        await ensure_account(api, account)
        if account["role"] != "runner":
            continue
        status, data = await api.request("POST", "/api/v1/runners", {
            "full_name": account["full_name"], "phone": account["phone"],
            "vehicle_type": "car", "vehicle_plate": "WTR 1234", "vehicle_model": "Perodua Bezza",
            "vehicle_year": 2023, "air_conditioned": True})
        if status not in (201, 409):
            raise RuntimeError(f"runner profile -> {status}: {data}")
        await api.call("POST", "/api/v1/runners/me/online",
                       {"latitude": KL[0], "longitude": KL[1]})
    return [a["email"] for a in SEED_ACCOUNTS]


def _around(center: tuple[float, float], max_km: float) -> tuple[float, float]:
    distance = random.uniform(0.3, max_km) / 111.0
    angle = random.uniform(0, 2 * math.pi)
    return center[0] + distance * math.sin(angle), center[1] + distance * math.cos(angle)


async def seed(base: str, runners: int) -> dict[str, Any]:
    async with db.transaction() as conn:
        shops = await seed_demo_shops(conn)
    async with aiohttp.ClientSession() as session:
        test_accounts = await ensure_test_accounts(session, base)
        owner = Api(session, base)
        owner_user = await owner.sign_up("owner", "Aisyah (demo owner)")
        created = []
        for i in range(runners):
            api = Api(session, base)
            user = await api.sign_up("runner", f"Runner {i + 1}")
            await api.call("POST", "/api/v1/runners", {
                "full_name": f"Runner {i + 1}", "phone": "+60123456789",
                "vehicle_type": random.choice(["car", "motorcycle", "van"]),
                "vehicle_plate": f"WXY {1000 + i}", "vehicle_model": "Myvi",
                "vehicle_year": 2022, "air_conditioned": True})
            lat, lng = _around(KL, 4.0)
            await api.call("POST", "/api/v1/runners/me/online",
                           {"latitude": lat, "longitude": lng})
            created.append(user["email"])
    return {"shops_added": shops, "owner": owner_user["email"], "runners": created,
            "password": PASSWORD, "test_accounts": test_accounts}


async def run_demo(base: str, interval: float, say) -> None:
    trace = [json.loads(line) for line in TRACE.read_text().splitlines() if line.strip()]
    async with aiohttp.ClientSession() as session:
        owner, runner = Api(session, base), Api(session, base)
        owner_user = await owner.sign_up("owner", "Aisyah (demo owner)")
        runner_user = await runner.sign_up("runner", "Farid (demo runner)")
        await runner.call("POST", "/api/v1/runners", {
            "full_name": "Farid (demo runner)", "phone": "+60123456789", "vehicle_type": "car",
            "vehicle_plate": "WXY 2026", "vehicle_model": "Perodua Myvi", "vehicle_year": 2022,
            "air_conditioned": True})
        start, end = trace[0], trace[-1]
        await runner.call("POST", "/api/v1/runners/me/online",
                          {"latitude": start["latitude"], "longitude": start["longitude"]})

        def address(point: dict, line1: str) -> dict:
            return {"line1": line1, "city": "Kuala Lumpur", "state": "WP Kuala Lumpur",
                    "postal_code": "50450", "country": "MY", "latitude": point["latitude"],
                    "longitude": point["longitude"]}

        booking = await owner.call("POST", "/api/v1/bookings", {
            "pet_spec": {"pet_type": "cat", "name": "Comot", "weight_kg": 4.2, "breed": "Kampung"},
            "pickup_address": address(start, "Jalan Ampang"),
            "dropoff_address": address(end, "Bangsar South"),
            "notes": "Demo delivery"})
        bid = booking["id"]
        payment = await owner.call("POST", "/api/v1/payments/initiate", {"booking_id": bid})
        await runner.call("POST", f"/api/v1/bookings/{bid}/accept")
        await runner.call("POST", f"/api/v1/bookings/{bid}/pickup")
        ws_base = base.replace("http", "ws", 1)
        say(f"owner   {owner_user['email']} / {PASSWORD}")
        say(f"runner  {runner_user['email']} / {PASSWORD}")
        say(f"booking {booking['booking_number']} ({bid}), paid {payment['amount_cents']} cents, "
            f"escrow {payment['escrow_status']}")
        say(f"live    {ws_base}/ws/tracking/{bid}?token={owner.token}")
        say(f"track   {base}/api/v1/tracking/{bid}  (Bearer owner token)")
        # The link the owner would send to family: a live page in any browser, no sign-in.
        share = await owner.call("POST", f"/api/v1/tracking/{bid}/share")
        say(f"page    {base}{share['share_url']}  (open in a browser: the live trip page)")
        for point in trace:
            await runner.call("POST", "/api/v1/runners/me/location", {
                "latitude": point["latitude"], "longitude": point["longitude"],
                "speed_kmh": point.get("speed_kmh", 0), "heading_degrees":
                point.get("heading_degrees", 0)})
            await asyncio.sleep(interval)
        await runner.call("POST", f"/api/v1/bookings/{bid}/deliver")
        say("deliver the runner marked it delivered: the escrow waits for the owner's confirm")
        # The owner's "Confirm delivery": completes the booking; payment then releases.
        status = (await owner.call("POST", f"/api/v1/bookings/{bid}/confirm"))["status"]
        escrow = "held"
        for _ in range(50):
            escrow = (await owner.call("GET", f"/api/v1/payments/booking/{bid}"))["escrow_status"]
            if escrow == "released":
                break
            await asyncio.sleep(0.2)
        track = await owner.call("GET", f"/api/v1/tracking/{bid}")
        say(f"done    booking {status}, escrow {escrow}; trip {track['total_distance_km']} km over "
            f"{len(track['waypoints'])} waypoints; notifications: "
            f"{len(await owner.call('GET', '/api/v1/notifications'))} for the owner")


@app.command(option("--base-url", default="http://localhost:8080"),
             option("--runners", type=int, default=8))
async def seed_demo(self, base_url: str, runners: int) -> None:
    """Add demo pet shops, an owner and runners online around Kuala Lumpur."""
    self.say(json.dumps(await seed(base_url, runners), indent=2))


@app.command(option("--base-url", default="http://localhost:8080"),
             option("--interval", type=float, default=1.0, help="Seconds between GPS fixes"))
async def demo(self, base_url: str, interval: float) -> None:
    """Book, pay and run a live delivery along the recorded 5 km trace."""
    await run_demo(base_url, interval, self.say)
