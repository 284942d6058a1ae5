"""Authorization matrix: every route of the worker × every kind of caller, through the gateway.

One scenario: owner A books a pet, pays, runner R accepts (the assigned runner); owner B, runner
R2 (not assigned), shop S and an admin look on. Each row of `MATRIX` names a route, how to fill
its path and body, and the status each caller must get. Routes whose success changes the
scenario (accept, decline, pickup, cancel, refund, delete, ...) run every caller against a
fresh resource of the right state, so the outcome of one caller never decides another's.

`test_matrix_covers_every_route` compares the table with the routes the worker serves (the
OpenAPI document built from its router): a new route without a row fails it.

Expected statuses follow each domain's documented rules (docs/<domain>.md) and DESIGN item 6:
a booking, its payment, its track, chat and WebSocket are for its owner, its runner and
admins. docs/reliability.md explains the table and lists where domains differ.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt

import kilat
from gateway.routes import match as gateway_match
from tests.conftest import Client
from tests.platform import JWT_SECRET, Platform, wait_until
from web.openapi import build_spec, operations

ROLES = ("anon", "owner", "other_owner", "runner", "assigned", "shop", "admin")
AUTHED = ROLES[1:]
ANON_ERROR = {"error": "authorization header is required"}

KL_A = (3.139, 101.6869)
KL_B = (3.15, 101.71)


# ---------------------------------------------------------------- expectations

def everyone(status: int) -> dict[str, int]:
    """A public route: the same answer with or without a token."""
    return dict.fromkeys(ROLES, status)


def signed_in(status: int, **per_role: int) -> dict[str, int]:
    """Any signed-in caller gets `status` (unless overridden); anonymous callers 401."""
    return {"anon": 401, **dict.fromkeys(AUTHED, status), **per_role}


def only(status: int, *roles: str, others: int = 403) -> dict[str, int]:
    """`roles` get `status`; the other signed-in callers `others`; anonymous 401."""
    return {"anon": 401, **{r: (status if r in roles else others) for r in AUTHED}}


def participants(status: int, others: int = 403) -> dict[str, int]:
    """DESIGN 6: the booking's owner, its assigned runner and admins."""
    return only(status, "owner", "assigned", "admin", others=others)


# ---------------------------------------------------------------- the scenario

def address(point: tuple[float, float], line1: str = "1 Jalan Ampang") -> dict[str, Any]:
    return {"line1": line1, "city": "Kuala Lumpur", "state": "WP", "postal_code": "50450",
            "country": "MY", "latitude": point[0], "longitude": point[1]}


BOOKING_BODY = {"pet_spec": {"pet_type": "cat", "name": "Milo", "weight_kg": 4},
                "pickup_address": address(KL_A), "dropoff_address": address(KL_B, "2 Jalan"),
                "notes": "authz matrix"}
RUNNER_BODY = {"vehicle_type": "car", "vehicle_plate": "WXY 1234", "vehicle_model": "Myvi",
               "vehicle_year": 2020}
SHOP_BODY = {"name": "Matrix Grooming", "address": "3 Jalan Bukit", "latitude": 3.14,
             "longitude": 101.69, "category": "grooming"}


@dataclass
class Scenario:
    platform: Platform
    http: aiohttp.ClientSession
    clients: dict[str, Client]
    ids: dict[str, str] = field(default_factory=dict)

    @property
    def owner(self) -> Client:
        return self.clients["owner"]

    @property
    def assigned(self) -> Client:
        return self.clients["assigned"]

    def uid(self, role: str) -> str:
        return self.clients[role].user["id"]

    async def ok(self, who: Client, method: str, path: str, body: Any = None,
                 status: int | tuple[int, ...] = (200, 201)) -> Any:
        code, resp = await who.call(method, path, body)
        wanted = status if isinstance(status, tuple) else (status,)
        assert code in wanted, f"set-up {method} {path}: {code} {resp}"
        return resp.get("data") if isinstance(resp, dict) else resp

    # Fresh resources for rows whose success would change the shared scenario.

    async def booking(self, state: str = "requested") -> str:
        """A new booking of owner A, driven by the API to `state`."""
        b = await self.ok(self.owner, "POST", "/api/v1/bookings", BOOKING_BODY, 201)
        path = f"/api/v1/bookings/{b['id']}"
        steps = {"accepted": [(self.assigned, "accept")],
                 "in_progress": [(self.assigned, "accept"), (self.assigned, "pickup")],
                 "delivered": [(self.assigned, "accept"), (self.assigned, "pickup"),
                               (self.assigned, "deliver")],
                 "disputed": [(self.assigned, "accept"), (self.assigned, "pickup"),
                              (self.assigned, "deliver"), (self.owner, "dispute")],
                 "completed": [(self.assigned, "accept"), (self.assigned, "pickup"),
                               (self.assigned, "deliver"), (self.owner, "confirm")]}
        if state != "requested":
            # No pickup without a held escrow (DESIGN 12): accepted bookings are paid too.
            await self.ok(self.owner, "POST", "/api/v1/payments/initiate",
                          {"booking_id": b["id"]}, 201)
        for who, action in steps.get(state, []):
            body = {"reason": "the crate was damaged"} if action == "dispute" else None
            await self.ok(who, "POST", f"{path}/{action}", body, 200)
        return b["id"]

    async def paid_booking(self) -> str:
        booking_id = await self.booking()
        await self.ok(self.owner, "POST", "/api/v1/payments/initiate",
                      {"booking_id": booking_id}, 201)
        return booking_id


async def build_scenario(platform: Platform, http: aiohttp.ClientSession, new_client,
                         admin: Client) -> Scenario:
    clients = {"anon": Client(http, platform.base_url)}
    for role, kind in (("owner", "owner"), ("other_owner", "owner"), ("runner", "runner"),
                       ("assigned", "runner"), ("shop", "shop")):
        clients[role] = await new_client(kind)
    clients["admin"] = admin
    sc = Scenario(platform, http, clients)
    ids = sc.ids
    for role in ("runner", "assigned"):
        await sc.ok(clients[role], "POST", "/api/v1/runners", RUNNER_BODY, 201)
    profile = await sc.ok(sc.assigned, "GET", "/api/v1/runners/me")
    ids["runner_profile"] = profile["id"]
    ids["runner_user"] = sc.uid("assigned")
    ids["owner_user"] = sc.uid("owner")

    # The shared booking: A books and pays, R accepts.
    ids["booking"] = await sc.booking()
    payment = await sc.ok(sc.owner, "POST", "/api/v1/payments/initiate",
                          {"booking_id": ids["booking"]}, 201)
    ids["payment"] = payment["id"]
    await sc.ok(sc.assigned, "POST", f"/api/v1/bookings/{ids['booking']}/accept", None, 200)

    ids["pet"] = (await sc.ok(sc.owner, "POST", "/api/v1/pets",
                              {"name": "Milo", "pet_type": "cat"}, 201))["id"]
    ids["shop"] = (await sc.ok(clients["shop"], "POST", "/api/v1/petshops", SHOP_BODY, 201))["id"]
    ids["destination"] = (await sc.ok(sc.assigned, "POST", "/api/v1/payouts/destinations", {
        "bank_name": "Maybank", "account_number": "1234567890", "account_holder": "R"}, 201))["id"]
    share = await sc.ok(sc.owner, "POST", f"/api/v1/tracking/{ids['booking']}/share", None, 201)
    ids["share_token"] = share["share_token"]
    victim = await new_client("owner")
    ids["victim"] = victim.user["id"]
    # A user whose refresh tokens the refresh row may spend (others keep theirs).
    ids["refresher_email"] = (await new_client("owner", email=f"refresh-{uuid.uuid4().hex[:8]}"
                                                              "@kilat.test")).user["email"]

    # Produced by agents from booking.accepted / booking.requested: wait for them.
    async def track_started() -> bool:
        code, _ = await sc.owner.get(f"/api/v1/tracking/{ids['booking']}")
        return code == 200

    last: list[Any] = []

    async def trip_live() -> bool:
        code, body = await admin.get(f"/api/v1/admin/tracking/{ids['booking']}/live")
        last[:] = [code, body]
        return code == 200

    async def notified() -> str | None:
        code, body = await sc.owner.get("/api/v1/notifications")
        return code == 200 and body["data"] and body["data"][0]["id"]

    await wait_until(track_started, 60, what="track of the shared booking")
    try:
        await wait_until(trip_live, 60, what="live trip entry of the shared booking")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last answer {last}") from None
    ids["notification"] = await wait_until(notified, 60, what="a notification for owner A")
    return sc


# ---------------------------------------------------------------- the table

Body = Any | Callable[[str, Scenario], Any]
Prepare = Callable[[str, Scenario], Awaitable[dict[str, str]]]


@dataclass
class Row:
    method: str
    route: str                       # exactly as the worker's router (OpenAPI) spells it
    expected: dict[str, int]
    args: dict[str, str] = field(default_factory=dict)   # path parameter → scenario id name
    body: Body = None
    query: str = ""
    prepare: Prepare | None = None   # per caller, before the call: fresh ids for `args`
    ws: bool = False


def fresh_booking(state: str) -> Prepare:
    async def prepare(role: str, sc: Scenario) -> dict[str, str]:
        return {"booking": await sc.booking(state)}
    return prepare


async def fresh_paid_booking(role: str, sc: Scenario) -> dict[str, str]:
    booking_id = await sc.paid_booking()
    code, body = await sc.owner.get(f"/api/v1/payments/booking/{booking_id}")
    assert code == 200, body
    return {"payment": body["data"]["id"]}


async def fresh_pet(role: str, sc: Scenario) -> dict[str, str]:
    pet = await sc.ok(sc.owner, "POST", "/api/v1/pets", {"name": "Tom", "pet_type": "cat"}, 201)
    return {"pet": pet["id"]}


async def fresh_shop(role: str, sc: Scenario) -> dict[str, str]:
    shop = await sc.ok(sc.clients["shop"], "POST", "/api/v1/petshops", SHOP_BODY, 201)
    return {"shop": shop["id"]}


async def fresh_refresh_token(role: str, sc: Scenario) -> dict[str, str]:
    login = await sc.ok(sc.clients["anon"], "POST", "/api/v1/auth/login",
                        {"email": sc.ids["refresher_email"], "password": "Secret123!"}, 200)
    return {"refresh_token": login["refresh_token"]}


def subscribed(wanted: bool) -> Prepare:
    """Put the caller's subscription in the state the row needs (signed-in callers only)."""
    async def prepare(role: str, sc: Scenario) -> dict[str, str]:
        if role != "anon":
            who = sc.clients[role]
            if wanted:
                await sc.ok(who, "POST", "/api/v1/subscriptions", {"plan": "basic"}, (201, 409))
            else:
                await sc.ok(who, "POST", "/api/v1/subscriptions/me/cancel", None, (200, 404))
        return {}
    return prepare


async def online(role: str, sc: Scenario) -> dict[str, str]:
    if role in ("runner", "assigned"):
        await sc.ok(sc.clients[role], "POST", "/api/v1/runners/me/online",
                    {"latitude": KL_A[0], "longitude": KL_A[1]}, 200)
    return {}


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def review_body(role: str, sc: Scenario) -> dict[str, Any]:
    # The assigned runner reviews the owner; everyone else tries to review the runner.
    reviewee = sc.ids["owner_user"] if role == "assigned" else sc.ids["runner_user"]
    return {"booking_id": sc.ids["booking"], "reviewee_id": reviewee,
            "reviewee_type": "owner" if role == "assigned" else "runner", "rating": 5}


ADMIN = ("admin",)
CONTACT = ("owner", "assigned", "admin")  # who sees the assigned runner's phone and plate
RUNNERS = ("runner", "assigned")
OWNERS = ("owner", "other_owner")
B = "/api/v1/bookings/{id}"

MATRIX: list[Row] = [
    # ------------------------------------------------ identity
    Row("POST", "/api/v1/auth/register", everyone(201),
        body=lambda role, sc: {"email": unique("reg-") + "@kilat.test", "password": "Secret123!",
                               "full_name": "New User", "role": "owner"}),
    Row("POST", "/api/v1/auth/login", everyone(200),
        body=lambda role, sc: {"email": sc.ids["refresher_email"], "password": "Secret123!"}),
    Row("POST", "/api/v1/auth/refresh", everyone(200), prepare=fresh_refresh_token,
        body=lambda role, sc: {"refresh_token": sc.ids["refresh_token"]}),
    Row("POST", "/api/v1/auth/forgot-password", everyone(202), body={"email": "x@kilat.test"}),
    # Public; an unknown reset token is a 400 for everyone (no 401 before the body).
    Row("POST", "/api/v1/auth/reset-password", everyone(400),
        body={"token": "not-a-token", "newPassword": "Secret123!"}),
    Row("POST", "/api/v1/runners/apply", everyone(201),
        body=lambda role, sc: {"name": "Ali", "phone": "+60123456789", "icNumber": unique("IC"),
                               "vehicleType": "car", "plateNumber": "WXY 1",
                               "petExperience": ["cats"], "consentAcknowledged": True}),
    Row("GET", "/api/v1/auth/profile", signed_in(200)),
    Row("PUT", "/api/v1/auth/profile", signed_in(200), body={}),
    Row("GET", "/api/v1/referrals/code", signed_in(200)),
    Row("GET", "/api/v1/referrals/me", signed_in(200)),
    Row("GET", "/api/v1/admin/users", only(200, *ADMIN)),
    Row("GET", "/api/v1/admin/users/{id}", only(200, *ADMIN), args={"id": "owner_user"}),
    Row("POST", "/api/v1/admin/users/{id}/ban", only(200, *ADMIN), args={"id": "victim"}),
    Row("POST", "/api/v1/admin/users/{id}/unban", only(200, *ADMIN), args={"id": "victim"}),
    Row("GET", "/api/v1/admin/stats/users", only(200, *ADMIN)),
    # ------------------------------------------------ booking
    Row("POST", "/api/v1/bookings", only(201, *OWNERS), body=BOOKING_BODY),
    Row("GET", "/api/v1/bookings", signed_in(200)),
    Row("GET", B, participants(200), args={"id": "booking"}),
    # Documented exception to DESIGN 6: any runner may look at an open job before accepting it.
    Row("GET", B, only(200, "owner", "admin", *RUNNERS), args={"id": "booking"},
        prepare=fresh_booking("requested")),
    Row("POST", B + "/accept", only(200, *RUNNERS), args={"id": "booking"},
        prepare=fresh_booking("requested")),
    Row("POST", B + "/decline", only(200, "assigned"), args={"id": "booking"},
        prepare=fresh_booking("accepted"), body={"reason": "too_far"}),
    Row("POST", B + "/pickup", only(200, "assigned"), args={"id": "booking"},
        prepare=fresh_booking("accepted")),
    Row("POST", B + "/deliver", only(200, "assigned"), args={"id": "booking"},
        prepare=fresh_booking("in_progress")),
    Row("POST", B + "/confirm", only(200, "owner"), args={"id": "booking"},
        prepare=fresh_booking("delivered")),
    Row("POST", B + "/dispute", only(200, "owner"), args={"id": "booking"},
        prepare=fresh_booking("delivered"), body={"reason": "the crate was damaged"}),
    Row("POST", "/api/v1/admin/bookings/{id}/resolve", only(200, *ADMIN), args={"id": "booking"},
        prepare=fresh_booking("disputed"), body={"outcome": "release", "note": "checked"}),
    Row("POST", B + "/cancel", participants(200), args={"id": "booking"},
        prepare=fresh_booking("accepted"), body={"reason": "changed plans"}),
    Row("POST", B + "/rebook", only(201, "owner"), args={"id": "booking"}),
    Row("POST", B + "/photo", only(201, "assigned"), args={"id": "booking"},
        body={"photo_type": "pickup", "photo_url": "https://img.test/p.jpg"}),
    Row("GET", B + "/photos", participants(200), args={"id": "booking"}),
    Row("GET", "/api/v1/admin/bookings", only(200, *ADMIN)),
    Row("GET", "/api/v1/admin/stats/bookings", only(200, *ADMIN)),
    Row("POST", "/api/v1/pets", only(201, *OWNERS), body={"name": "Rex", "pet_type": "dog"}),
    Row("GET", "/api/v1/pets", only(200, *OWNERS)),
    Row("POST", "/api/v1/users/me/pets", only(201, *OWNERS), body={"name": "Rex", "pet_type": "dog"}),
    Row("GET", "/api/v1/users/me/pets", only(200, *OWNERS)),
    Row("GET", "/api/v1/pets/{id}", only(200, "owner"), args={"id": "pet"}),
    Row("PUT", "/api/v1/pets/{id}", only(200, "owner"), args={"id": "pet"}, body={"breed": "Siam"}),
    Row("DELETE", "/api/v1/pets/{id}", only(200, "owner"), args={"id": "pet"}, prepare=fresh_pet),
    # ------------------------------------------------ payment
    Row("POST", "/api/v1/payments/initiate", only(201, "owner"), prepare=fresh_booking("requested"),
        body=lambda role, sc: {"booking_id": sc.ids["booking"]}),
    Row("GET", "/api/v1/payments", signed_in(200)),
    Row("GET", "/api/v1/payments/booking/{booking_id}", participants(200),
        args={"booking_id": "booking"}),
    Row("GET", "/api/v1/payments/{payment_id}", participants(200), args={"payment_id": "payment"}),
    Row("POST", "/api/v1/payments/{payment_id}/refund", only(200, *ADMIN),
        args={"payment_id": "payment"}, prepare=fresh_paid_booking, body={"reason": "goodwill"}),
    Row("GET", "/api/v1/admin/payments", only(200, *ADMIN)),
    Row("GET", "/api/v1/admin/stats/payments", only(200, *ADMIN)),
    Row("GET", "/api/v1/admin/promos", only(200, *ADMIN)),
    Row("POST", "/api/v1/promos", only(201, *ADMIN),
        body=lambda role, sc: {"code": unique("M"), "discount_type": "fixed", "discount_value": 100,
                               "valid_from": "2026-01-01T00:00:00Z",
                               "valid_until": "2030-01-01T00:00:00Z"}),
    Row("POST", "/api/v1/promos/validate", signed_in(200), body={"code": "NOPE", "amount_cents": 1000}),
    Row("GET", "/api/v1/promos/active", signed_in(200)),
    Row("GET", "/api/v1/subscriptions/plans", everyone(200)),
    Row("POST", "/api/v1/subscriptions", signed_in(201), prepare=subscribed(False),
        body={"plan": "basic"}),
    Row("GET", "/api/v1/subscriptions/me", signed_in(200), prepare=subscribed(True)),
    Row("POST", "/api/v1/subscriptions/me/cancel", signed_in(200), prepare=subscribed(True)),
    Row("POST", "/api/v1/payouts/destinations", only(201, *RUNNERS),
        body={"bank_name": "CIMB", "account_number": "9876543210", "account_holder": "Me"}),
    Row("GET", "/api/v1/payouts/destinations", only(200, *RUNNERS)),
    # R's own destination passes the ownership check and fails on balance (400: R earns from
    # the paid bookings other rows confirm, never this much); R2 may not cash out to R's
    # account (403).
    Row("POST", "/api/v1/payouts/cash-out", only(400, "assigned"),
        body=lambda role, sc: {"amountMyrCents": 10**9, "destinationId": sc.ids["destination"]}),
    # ------------------------------------------------ runner and pet shops
    Row("POST", "/api/v1/runners", only(409, *RUNNERS), body=RUNNER_BODY),  # profiles exist
    Row("GET", "/api/v1/runners/me", only(200, *RUNNERS)),
    Row("PUT", "/api/v1/runners/me", only(200, *RUNNERS), body={"vehicle_model": "Axia"}),
    Row("POST", "/api/v1/runners/me/online", only(200, *RUNNERS),
        body={"latitude": KL_A[0], "longitude": KL_A[1]}),
    Row("POST", "/api/v1/runners/me/offline", only(200, *RUNNERS)),
    Row("POST", "/api/v1/runners/me/location", only(200, *RUNNERS), prepare=online,
        body={"latitude": KL_A[0], "longitude": KL_A[1], "speed_kmh": 10, "heading_degrees": 90}),
    Row("POST", "/api/v1/runners/me/crates", only(201, *RUNNERS),
        body={"size": "small", "pet_types": ["cat"], "max_weight_kg": 8}),
    Row("GET", "/api/v1/runners/nearby", signed_in(200), query="?latitude=3.139&longitude=101.68"),
    # Everyone signed in sees the card; who also sees phone and plate: CONTACT below.
    Row("GET", "/api/v1/runners/{runner_id}", signed_in(200), args={"runner_id": "runner_user"}),
    Row("GET", "/api/v1/petshops", signed_in(200)),
    Row("GET", "/api/v1/petshops/nearby", signed_in(200), query="?latitude=3.139&longitude=101.68"),
    Row("GET", "/api/v1/petshops/mine", only(200, "shop")),
    Row("GET", "/api/v1/petshops/{shop_id}", signed_in(200), args={"shop_id": "shop"}),
    Row("POST", "/api/v1/petshops", only(201, "shop"), body=SHOP_BODY),
    Row("PUT", "/api/v1/petshops/{shop_id}", only(200, "shop", "admin"), args={"shop_id": "shop"},
        body={"description": "updated"}),
    Row("DELETE", "/api/v1/petshops/{shop_id}", only(200, "shop", "admin"),
        args={"shop_id": "shop"}, prepare=fresh_shop),
    Row("GET", "/api/v1/admin/runners/{runner_id}/position", only(200, *ADMIN),
        args={"runner_id": "runner_user"}),
    # ------------------------------------------------ tracking and chat
    Row("GET", "/api/v1/tracking/shared/{token}", everyone(200), args={"token": "share_token"}),
    Row("GET", "/api/v1/tracking/{booking_id}", participants(200), args={"booking_id": "booking"}),
    Row("GET", "/api/v1/bookings/{booking_id}/tracking", participants(200),
        args={"booking_id": "booking"}),
    Row("GET", "/api/v1/tracking/{booking_id}/route", participants(200),
        args={"booking_id": "booking"}),
    Row("POST", "/api/v1/tracking/{booking_id}/share", participants(201),
        args={"booking_id": "booking"}),
    Row("GET", "/api/v1/admin/tracking/{booking_id}/live", only(200, *ADMIN),
        args={"booking_id": "booking"}),
    Row("POST", "/api/v1/chat/{booking_id}/messages", participants(201),
        args={"booking_id": "booking"}, body={"message_type": "text", "content": "hello"}),
    Row("GET", "/api/v1/chat/{booking_id}/messages", participants(200),
        args={"booking_id": "booking"}),
    Row("GET", "/ws/tracking/{booking_id}", participants(101), args={"booking_id": "booking"},
        ws=True),
    # The share link is the capability: anyone holding it may watch, read-only.
    Row("GET", "/ws/tracking/shared/{token}", everyone(101), args={"token": "share_token"},
        ws=True),
    # ------------------------------------------------ notifications (someone else's: 404)
    Row("GET", "/api/v1/notifications", signed_in(200)),
    Row("POST", "/api/v1/notifications/fcm-token", signed_in(200), body={"token": "fcm-abc"}),
    Row("GET", "/api/v1/notifications/preferences", signed_in(200)),
    Row("PUT", "/api/v1/notifications/preferences", signed_in(200), body={"enable_push": True}),
    Row("GET", "/api/v1/notifications/{id}", only(200, "owner", others=404),
        args={"id": "notification"}),
    Row("PUT", "/api/v1/notifications/{id}/read", only(200, "owner", others=404),
        args={"id": "notification"}),
    Row("POST", "/api/v1/notifications/{id}/read", only(200, "owner", others=404),
        args={"id": "notification"}),
    # ------------------------------------------------ reviews
    Row("POST", "/api/v1/reviews", only(201, "owner", "assigned"),
        prepare=fresh_booking("completed"), body=review_body),
    Row("GET", "/api/v1/reviews/me", signed_in(200)),
    Row("GET", "/api/v1/reviews/runner/{id}", everyone(200), args={"id": "runner_profile"}),
    Row("GET", "/api/v1/reviews/shop/{id}", everyone(200), args={"id": "shop"}),
    Row("GET", "/api/v1/reviews/rating/{type}/{id}", everyone(200),
        args={"type": "=runner", "id": "runner_profile"}),
    # ------------------------------------------------ last: logout ends every session of the
    # caller (docs/identity.md), so no row may follow it
    Row("POST", "/api/v1/auth/logout", signed_in(200)),
]


# ---------------------------------------------------------------- running a row

def spec_operations() -> set[tuple[str, str]]:
    return operations(build_spec(kilat.app.web.web_app))


def protected_operations() -> set[tuple[str, str]]:
    spec = build_spec(kilat.app.web.web_app)
    return {(m.upper(), p) for p, ops in spec["paths"].items() for m, op in ops.items()
            if "security" in op}


def resolve(row: Row, ids: dict[str, str]) -> str:
    values = {name: key[1:] if key.startswith("=") else ids[key] for name, key in row.args.items()}
    return row.route.format(**values) + row.query


async def ws_status(sc: Scenario, path: str, token: str | None) -> tuple[int, Any]:
    """101 when the gateway upgraded (then closed at once), else the refusal and its body."""
    base = sc.platform.base_url
    query = f"?token={token}" if token else ""
    try:
        async with sc.http.ws_connect(base.replace("http", "ws", 1) + path + query) as ws:
            await ws.close()
            return 101, None
    except aiohttp.WSServerHandshakeError as exc:
        async with sc.http.get(base + path + query) as resp:
            return exc.status, await resp.json(content_type=None)


async def call(row: Row, role: str, sc: Scenario) -> tuple[int, Any]:
    ids = dict(sc.ids)
    if row.prepare is not None:
        ids.update(await row.prepare(role, sc))
    path = resolve(row, ids)
    who = sc.clients[role]
    if row.ws:
        return await ws_status(sc, path, who.token)
    body = row.body(role, Scenario(sc.platform, sc.http, sc.clients, ids)) \
        if callable(row.body) else row.body
    return await who.call(row.method, path, body)


def envelope_problem(status: int, body: Any) -> str | None:
    """4xx bodies are `{"error": ...}` (middleware) or `{"success": false, "error": ...}`."""
    if not 400 <= status < 500:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return f"not an error envelope: {body!r}"
    if body.get("success", False) is not False:
        return f"error with success != false: {body!r}"
    return None


# ---------------------------------------------------------------- tests

def test_matrix_covers_every_route() -> None:
    served = spec_operations()
    table = {(r.method, r.route) for r in MATRIX}
    assert served - table == set(), f"routes without a matrix row: {sorted(served - table)}"
    assert table - served == set(), f"matrix rows for routes not served: {sorted(table - served)}"
    for row in MATRIX:
        assert set(row.expected) == set(ROLES), f"{row.method} {row.route}: every role needed"
    unrouted = sorted((m, p) for m, p in served if gateway_match(p) is None)
    assert unrouted == [], f"routes the gateway does not forward: {unrouted}"


async def test_authorization_matrix(platform: Platform, http, new_client, new_admin) -> None:
    sc = await build_scenario(platform, http, new_client, new_admin)
    protected = protected_operations()
    failures: list[str] = []
    calls = 0
    # DESIGN 14: the assigned runner's phone and plate, for the owner of the booking R
    # accepted, R and admins; the card without them for everyone else. Checked first: the
    # matrix ends with logout, which ends every session of the callers.
    for role in AUTHED:
        status, body = await sc.clients[role].get(f"/api/v1/runners/{sc.ids['runner_user']}")
        shown = {k for k in ("phone", "vehicle_plate") if k in body["data"]}
        wanted = {"phone", "vehicle_plate"} if role in CONTACT else set()
        if status != 200 or shown != wanted:
            failures.append(f"GET /api/v1/runners/{{runner_id}} as {role}: {status}, shows "
                            f"{sorted(shown)}, expected {sorted(wanted)}")
    started = time.monotonic()
    for row in MATRIX:
        for role in ROLES:
            status, body = await call(row, role, sc)
            calls += 1
            where = f"{row.method} {row.route}{' (fresh)' if row.prepare else ''} as {role}"
            if status != row.expected[role]:
                failures.append(f"{where}: expected {row.expected[role]}, got {status} {body!r}")
                continue
            problem = envelope_problem(status, body)
            if problem:
                failures.append(f"{where}: {problem}")
            if role == "anon" and status == 401 and not row.ws and body != ANON_ERROR:
                failures.append(f"{where}: anonymous 401 body {body!r}")
            if role == "anon" and (row.method, row.route) in protected and not row.ws \
                    and status != 401:
                failures.append(f"{where}: protected route answered {status} without a token")
    print(f"authz matrix: {len(MATRIX)} rows, {calls} calls in {time.monotonic() - started:.1f}s")
    assert not failures, f"{len(failures)} authorization mismatches:\n" + "\n".join(failures)


async def _refused(c: Client) -> bool:
    return await c.get("/api/v1/auth/profile") == (401, {"error": "invalid or expired token"})


def _token(claims: dict[str, Any], secret: str = JWT_SECRET) -> str:
    now = int(time.time())
    base = {"jti": str(uuid.uuid4()), "sub": claims.get("user_id", str(uuid.uuid4())),
            "iat": now, "exp": now + 900, "iss": "kilat-pet-runner",
            "user_id": str(uuid.uuid4()), "email": "x@kilat.test", "role": "admin",
            "token_type": "access"}
    return jwt.encode({**base, **claims}, secret, algorithm="HS256")


async def test_bad_credentials_are_401_on_every_protected_route(platform: Platform, http,
                                                                new_client, new_admin) -> None:
    """Garbage, expired, wrongly signed, refresh-as-access and non-Bearer credentials, and the
    unexpired tokens of an ended session or a banned user: 401 with the middleware's texts on
    every protected route, including the WebSocket."""
    owner = await new_client("owner")
    logged_out, banned = await new_client("owner"), await new_client("runner")
    assert (await logged_out.post("/api/v1/auth/logout"))[0] == 200
    assert (await new_admin.post(f"/api/v1/admin/users/{banned.user['id']}/ban"))[0] == 200
    for gone in (logged_out, banned):  # the revocation reaches the worker within 2 s
        await wait_until(lambda c=gone: _refused(c), 2, 0.05, what="revoked token refused")
    now = int(time.time())
    bad_tokens = {
        "garbage": "not.a.jwt",
        "expired": _token({"iat": now - 3600, "exp": now - 60}),
        "wrong secret": _token({}, secret="another-secret-0123456789abcdef0123456"),
        "refresh token": owner.refresh_token or "",
        "alg none": jwt.encode({"user_id": str(uuid.uuid4()), "role": "admin",
                                "token_type": "access", "exp": now + 900}, None,
                               algorithm="none"),
        "ended session": logged_out.token or "",
        "banned user": banned.token or "",
    }
    client = Client(http, platform.base_url)
    some_id = str(uuid.uuid4())
    failures: list[str] = []
    for method, route in sorted(protected_operations()):
        path = route.replace("{type}", "runner")
        for name in ("booking_id", "payment_id", "runner_id", "shop_id", "id", "token"):
            path = path.replace("{" + name + "}", some_id)
        for label, token in bad_tokens.items():
            status, body = await client.call(method, path, {}, token=token)
            if (status, body) != (401, {"error": "invalid or expired token"}):
                failures.append(f"{method} {route} with {label}: {status} {body!r}")
        status, body = await client.call(method, path, {},
                                         headers={"Authorization": f"Basic {owner.token}"})
        if (status, body) != (401, {"error": "authorization header must be Bearer {token}"}):
            failures.append(f"{method} {route} with Basic: {status} {body!r}")
    sc = Scenario(platform, http, {})
    booking_path = f"/ws/tracking/{some_id}"
    assert await ws_status(sc, booking_path, None) == (
        401, {"error": "token query parameter is required"})
    for label, token in bad_tokens.items():
        got = await ws_status(sc, booking_path, token)
        if got != (401, {"error": "invalid or expired token"}):
            failures.append(f"WS with {label}: {got}")
    assert not failures, "\n".join(failures)
