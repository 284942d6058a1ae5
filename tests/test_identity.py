"""Identity domain through the gateway: sign-up, sessions, profile, password reset, runner
applications, referrals (credited from booking.events) and user administration."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
import uuid
from datetime import UTC, datetime

import aiohttp
import jwt
import psycopg2
import pytest

from domain import identity as rules
from models.events import new_event
from tests.conftest import Client, signed_in_admin
from tests.platform import JWT_SECRET, Platform, wait_until

USER_KEYS = {"id", "email", "phone", "full_name", "role", "is_verified", "created_at"}
NO_AUTH = {"error": "authorization header is required"}
BAD_TOKEN = {"error": "invalid or expired token"}
NO_ROLE = {"error": "insufficient permissions"}
PASSWORD = "Secret123!"


def err(text: str) -> dict:
    return {"success": False, "error": text, "detail": ""}


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@kilat.test"


def claims_of(token: str) -> dict:
    return jwt.decode(token, JWT_SECRET, algorithms=["HS256"], issuer="kilat-pet-runner")


# Revocation must reach every worker within this many seconds (DESIGN item 13).
REVOCATION_S = 2.0


async def refused(c: Client, token: str | None = None) -> bool:
    """Whether the token is refused as revoked on an identity route and on another domain."""
    return (await c.get("/api/v1/auth/profile", token=token) == (401, BAD_TOKEN)
            and await c.get("/api/v1/bookings", token=token) == (401, BAD_TOKEN))


async def wait_refused(c: Client, *tokens: str, what: str = "revoked token refused") -> None:
    for token in tokens:
        await wait_until(lambda t=token: refused(c, t), REVOCATION_S, 0.05, what=what)


def mint(claims: dict) -> str:
    now = int(time.time())
    base = {"jti": str(uuid.uuid4()), "iat": now, "exp": now + 600, "iss": "kilat-pet-runner",
            "token_type": "access", "email": "x@kilat.test", "role": "admin"}
    return jwt.encode({**base, **claims}, JWT_SECRET, algorithm="HS256")


async def register(client: Client, **fields) -> tuple[int, dict]:
    body = {"email": unique_email(), "password": PASSWORD, "full_name": "Siti Aminah",
            "phone": "+60123456789", "role": "owner", **fields}
    return await client.post("/api/v1/auth/register", body)


# ---------------------------------------------------------------- sign-up and login

async def test_register_login_and_profile(platform: Platform, client: Client) -> None:
    email = unique_email("Mixed.Case")
    status, body = await register(client, email=email.upper(), phone=" +60123456789 ")
    assert status == 201, body
    assert body["success"] is True and set(body["data"]) == {"access_token", "refresh_token",
                                                             "user"}
    user = body["data"]["user"]
    assert set(user) == USER_KEYS  # avatar_url omitted while empty
    assert user["email"] == email.lower() and user["phone"] == "+60123456789"
    assert user["role"] == "owner" and user["is_verified"] is False
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", user["created_at"])

    claims = jwt.decode(body["data"]["access_token"], JWT_SECRET, algorithms=["HS256"],
                        issuer="kilat-pet-runner")
    assert claims["token_type"] == "access" and claims["sub"] == claims["user_id"] == user["id"]
    assert claims["role"] == "owner" and claims["email"] == email.lower()
    assert claims["exp"] - claims["iat"] == 15 * 60
    refresh = jwt.decode(body["data"]["refresh_token"], JWT_SECRET, algorithms=["HS256"],
                         issuer="kilat-pet-runner")
    assert refresh["token_type"] == "refresh" and refresh["email"] == "" and refresh["role"] == ""
    assert refresh["exp"] - refresh["iat"] == 7 * 24 * 3600

    rows = platform.sql("SELECT email, password_hash FROM users WHERE id = %s", (user["id"],))
    assert rows[0]["email"] == email.lower() and rows[0]["password_hash"].startswith("$2b$10$")
    tokens = platform.sql("SELECT token_hash, revoked FROM refresh_tokens WHERE user_id = %s",
                          (user["id"],))
    assert len(tokens) == 1 and not tokens[0]["revoked"]
    # Only a hash of the refresh token is kept.
    assert tokens[0]["token_hash"] == hashlib.sha256(body["data"]["refresh_token"].encode()).hexdigest()
    await platform.wait_event("identity.events", "identity.user_registered", user_id=user["id"],
                              role="owner")

    # Emails are case-insensitive at login too.
    status, body = await client.post("/api/v1/auth/login",
                                     {"email": email.title(), "password": PASSWORD})
    assert status == 200, body
    assert body["data"]["user"] == user
    status, body = await client.get("/api/v1/auth/profile", token=body["data"]["access_token"])
    assert status == 200 and body == {"success": True, "data": user}


async def test_register_validation_errors(client: Client) -> None:
    cases = [
        ({"email": ""}, "Key: 'RegisterRequest.Email' Error:Field validation for 'Email' "
                        "failed on the 'required' tag"),
        ({"email": "not-an-email"}, "Key: 'RegisterRequest.Email' Error:Field validation for "
                                    "'Email' failed on the 'email' tag"),
        ({"full_name": " "}, "Key: 'RegisterRequest.FullName' Error:Field validation for "
                             "'FullName' failed on the 'required' tag"),
        ({"password": "short"}, "Key: 'RegisterRequest.Password' Error:Field validation for "
                                "'Password' failed on the 'min' tag"),
        ({"full_name": "x" * 256}, "Key: 'RegisterRequest.FullName' Error:Field validation for "
                                   "'FullName' failed on the 'max' tag"),
        ({"password": "p" * 73}, "Key: 'RegisterRequest.Password' Error:Field validation for "
                                 "'Password' failed on the 'max' tag"),
        ({"role": "superuser"}, "Key: 'RegisterRequest.Role' Error:Field validation for 'Role' "
                                "failed on the 'oneof' tag"),
    ]
    for fields, text in cases:
        status, body = await register(client, **fields)
        assert (status, body) == (400, {"success": False, "error": text}), fields
    status, body = await register(client, role="admin")
    assert (status, body) == (400, err("admin accounts cannot be self-registered"))
    # Common passwords (any case) and the email or its local part are refused (issue 13 #6).
    for password in ("12345678", "password", "Password", "qwertyuiop", "iloveyou"):
        status, body = await register(client, password=password)
        assert (status, body) == (400, err("password is too common")), password
    email = unique_email("same")
    for password in (email, email.upper(), email.split("@")[0]):
        status, body = await register(client, email=email, password=password)
        assert (status, body) == (400, err("password must not be the same as the email"))
    status, body = await register(client, phone="12ab")
    assert (status, body) == (400, err("invalid phone format: 12ab"))
    status, body = await client.call("POST", "/api/v1/auth/register", data=b"{oops",
                                     headers={"Content-Type": "application/json"})
    assert (status, body) == (400, {"success": False, "error": "invalid request body"})


async def test_duplicate_email_is_409_whatever_the_case(client: Client) -> None:
    email = unique_email("dup")
    assert (await register(client, email=email))[0] == 201
    status, body = await register(client, email=email.upper())
    assert (status, body) == (409, err(f"User with email '{email.upper()}' already exists"))


async def test_login_failures(client: Client, new_client) -> None:
    owner = await new_client("owner")
    for creds in ({"email": owner.user["email"], "password": "wrong-password"},
                  {"email": unique_email("nobody"), "password": PASSWORD}):
        status, body = await client.post("/api/v1/auth/login", creds)
        assert (status, body) == (401, err("invalid email or password"))
    status, body = await client.post("/api/v1/auth/login", {"email": owner.user["email"]})
    assert status == 400 and body["error"].endswith("failed on the 'required' tag")


# ---------------------------------------------------------------- auth middleware and roles

async def test_auth_errors_and_role_rules(client: Client, new_client) -> None:
    owner = await new_client("owner")
    assert await client.get("/api/v1/auth/profile") == (401, NO_AUTH)
    assert await client.get("/api/v1/auth/profile", headers={"Authorization": "Token abc"}) == (
        401, {"error": "authorization header must be Bearer {token}"})
    assert await client.get("/api/v1/auth/profile", token="garbage") == (401, BAD_TOKEN)
    # A refresh token is not an access token.
    assert await client.get("/api/v1/auth/profile", token=owner.refresh_token) == (401, BAD_TOKEN)
    # Expired (signed correctly, exp in the past).
    expired = mint({"sub": owner.user["id"], "user_id": owner.user["id"], "role": "owner",
                    "iat": int(time.time()) - 1000, "exp": int(time.time()) - 10})
    assert await client.get("/api/v1/auth/profile", token=expired) == (401, BAD_TOKEN)
    # Signed with another secret.
    forged = jwt.encode({"sub": owner.user["id"], "user_id": owner.user["id"], "role": "admin",
                         "token_type": "access", "iss": "kilat-pet-runner",
                         "iat": int(time.time()), "exp": int(time.time()) + 60},
                        "not-the-secret-at-all-0123456789", algorithm="HS256")
    assert await client.get("/api/v1/admin/users", token=forged) == (401, BAD_TOKEN)

    for path in ("/api/v1/auth/logout", "/api/v1/admin/users/" + owner.user["id"] + "/ban"):
        assert await client.post(path) == (401, NO_AUTH)
    for path in ("/api/v1/referrals/me", "/api/v1/referrals/code", "/api/v1/admin/users",
                 "/api/v1/admin/stats/users", "/api/v1/admin/users/" + owner.user["id"]):
        assert await client.get(path) == (401, NO_AUTH)
    for role in ("owner", "runner", "shop"):
        c = await new_client(role)
        assert c.user["role"] == role
        assert await c.get("/api/v1/admin/users") == (403, NO_ROLE)
        assert await c.get("/api/v1/admin/stats/users") == (403, NO_ROLE)
        assert await c.get("/api/v1/admin/users/" + owner.user["id"]) == (403, NO_ROLE)
        assert await c.post("/api/v1/admin/users/" + owner.user["id"] + "/ban") == (403, NO_ROLE)


# ---------------------------------------------------------------- sessions

async def test_refresh_rotates_and_revokes_the_old_token(platform: Platform, client: Client,
                                                         new_client) -> None:
    owner = await new_client("owner")
    old = owner.refresh_token
    status, body = await client.post("/api/v1/auth/refresh", {"refresh_token": old})
    assert status == 200, body
    assert set(body["data"]) == {"access_token", "refresh_token", "user"}
    assert body["data"]["user"] == owner.user
    new = body["data"]["refresh_token"]
    assert new != old
    status, _ = await client.get("/api/v1/auth/profile", token=body["data"]["access_token"])
    assert status == 200
    # Rotation keeps the session: every token of the chain carries the login's session id.
    sid = claims_of(owner.token)["sid"]
    assert uuid.UUID(sid) and claims_of(old)["sid"] == sid
    assert claims_of(new)["sid"] == claims_of(body["data"]["access_token"])["sid"] == sid

    # The new one works (once); the spent one is a reuse (test_reused_refresh_token_...).
    status, body = await client.post("/api/v1/auth/refresh", {"refresh_token": new})
    assert status == 200, body
    rows = platform.sql("SELECT jti, revoked, replaced_by, session_id FROM refresh_tokens "
                        "WHERE user_id = %s ORDER BY created_at", (owner.user["id"],))
    assert [r["revoked"] for r in rows] == [True, True, False]
    assert rows[0]["replaced_by"] == rows[1]["jti"] and rows[1]["replaced_by"] == rows[2]["jti"]
    assert {r["session_id"] for r in rows} == {sid}

    assert await client.post("/api/v1/auth/refresh", {"refresh_token": "nope"}) == (
        401, err("invalid refresh token"))
    assert await client.post("/api/v1/auth/refresh", {"refresh_token": owner.token}) == (
        401, err("invalid refresh token"))
    unknown = mint({"sub": owner.user["id"], "user_id": owner.user["id"], "email": "",
                    "role": "", "token_type": "refresh"})
    assert await client.post("/api/v1/auth/refresh", {"refresh_token": unknown}) == (
        401, err("refresh token not found"))
    status, body = await client.post("/api/v1/auth/refresh", {})
    assert status == 400 and "'RefreshRequest.RefreshToken'" in body["error"]


async def test_concurrent_rotation_of_one_token_succeeds_once(client: Client, new_client) -> None:
    owner = await new_client("owner")
    results = await asyncio.gather(*[
        client.post("/api/v1/auth/refresh", {"refresh_token": owner.refresh_token})
        for _ in range(4)])
    assert sorted(status for status, _ in results) == [200, 401, 401, 401]


async def test_reused_refresh_token_ends_its_whole_session(platform: Platform, client: Client,
                                                           new_client) -> None:
    owner = await new_client("owner")
    status, body = await client.post("/api/v1/auth/login",
                                     {"email": owner.user["email"], "password": PASSWORD})
    assert status == 200
    other_access, other_refresh = body["data"]["access_token"], body["data"]["refresh_token"]
    sid = claims_of(owner.token)["sid"]
    assert claims_of(other_access)["sid"] != sid  # each login is a session of its own

    first = owner.refresh_token
    accesses = [owner.token]
    refresh = first
    for _ in range(2):
        status, body = await client.post("/api/v1/auth/refresh", {"refresh_token": refresh})
        assert status == 200, body
        accesses.append(body["data"]["access_token"])
        refresh = body["data"]["refresh_token"]
    for token in accesses:
        assert (await client.get("/api/v1/auth/profile", token=token))[0] == 200

    # The first token comes back (a thief or the victim): the whole family ends.
    assert await client.post("/api/v1/auth/refresh", {"refresh_token": first}) == (
        401, err("refresh token is expired or revoked"))
    assert await client.post("/api/v1/auth/refresh", {"refresh_token": refresh}) == (
        401, err("refresh token is expired or revoked"))
    await wait_refused(client, *accesses, what="every access token of the reused session refused")
    (event,) = await platform.wait_event("identity.events", "identity.session_revoked",
                                         user_id=owner.user["id"])
    assert event["data"]["session_id"] == sid and event["data"]["reason"] == "refresh_token_reuse"
    assert platform.sql("SELECT count(*) AS n FROM refresh_tokens WHERE session_id = %s AND NOT "
                        "revoked", (sid,)) == [{"n": 0}]

    # The user's other session is untouched.
    assert (await client.get("/api/v1/auth/profile", token=other_access))[0] == 200
    status, body = await client.post("/api/v1/auth/refresh", {"refresh_token": other_refresh})
    assert status == 200, body


async def test_logout_revokes_every_session(platform: Platform, client: Client, new_client) -> None:
    owner = await new_client("owner")
    status, body = await client.post("/api/v1/auth/login",
                                     {"email": owner.user["email"], "password": PASSWORD})
    assert status == 200
    second, second_access = body["data"]["refresh_token"], body["data"]["access_token"]
    assert await owner.post("/api/v1/auth/logout") == (
        200, {"success": True, "data": {"message": "logged out successfully"}})
    for token in (owner.refresh_token, second):
        assert await client.post("/api/v1/auth/refresh", {"refresh_token": token}) == (
            401, err("refresh token is expired or revoked"))
    assert platform.sql("SELECT count(*) AS n FROM refresh_tokens WHERE user_id = %s AND NOT "
                        "revoked", (owner.user["id"],)) == [{"n": 0}]
    # The access tokens of every session end too, on every domain, not only on refresh.
    status, body = await client.post("/api/v1/auth/login",
                                     {"email": owner.user["email"], "password": PASSWORD})
    assert status == 200  # signing in again right away (same second) is a new, valid session
    fresh = body["data"]["access_token"]
    await wait_refused(client, owner.token, second_access)
    assert (await client.get("/api/v1/auth/profile", token=fresh))[0] == 200
    (event,) = await platform.wait_event("identity.events", "identity.sessions_revoked",
                                         user_id=owner.user["id"])
    assert event["data"]["reason"] == "logout"
    assert event["data"]["session_id"] == claims_of(owner.token)["sid"]
    assert event["data"]["before_ms"] <= claims_of(fresh)["iat_ms"]


def _insert_booking(platform: Platform, owner_id: str) -> str:
    booking_id = str(uuid.uuid4())
    addr = json.dumps({"address": "KLCC", "latitude": 3.1579, "longitude": 101.7117})
    platform.sql(
        "INSERT INTO bookings (id, booking_number, owner_id, status, pet_spec, "
        "crate_requirement, pickup_address, dropoff_address, pickup_location, "
        "estimated_price_cents) VALUES (%s, %s, %s, 'requested', %s, %s, %s, %s, "
        "ST_SetSRID(ST_MakePoint(101.7117, 3.1579), 4326)::geography, 1500)",
        (booking_id, "BK-" + uuid.uuid4().hex[:6].upper(), owner_id,
         json.dumps({"pet_type": "cat", "name": "Milo", "weight_kg": 4}),
         json.dumps({"size": "small", "required": True}), addr, addr))
    return booking_id


async def _closed_at(ws: aiohttp.ClientWebSocketResponse) -> tuple[float, int | None]:
    async for _ in ws:  # no frames are expected; wait for the server's close
        pass
    return time.monotonic(), ws.close_code


async def test_ban_on_one_worker_reaches_every_worker_within_two_seconds(
        fresh_platform: Platform, http) -> None:
    """Done when of issue 13: the time from a ban on worker 1 to the refusal of the user's
    unexpired access token on worker 2 (and on worker 1), and to the close of the user's open
    WebSockets on both, each under 2 s. The user's entry is written by whichever worker owns
    the user's identity.events partition, so one of the two workers necessarily learns of it
    through the global table's changelog."""
    p = fresh_platform
    w1, w2 = p.start_worker("w1"), p.start_worker("w2")
    await p.wait_ready(w1)
    await p.wait_ready(w2)
    await p.wait_ready(w1)  # again: w2's arrival made w1 rebalance
    gw = p.start_gateway(RATE_LIMIT_PER_MIN="100000")
    await p.wait_ready(gw, "/health")
    admin = await signed_in_admin(p, http)
    status, body = await register(Client(http, p.base_url), role="owner")
    assert status == 201, body
    victim_id, token = body["data"]["user"]["id"], body["data"]["access_token"]
    on = {w.name: Client(http, w.url, token) for w in (w1, w2)}
    for c in on.values():
        assert (await c.get("/api/v1/bookings"))[0] == 200

    booking_id = _insert_booking(p, victim_id)
    sockets = {name: await http.ws_connect(
        url.replace("http", "ws", 1) + f"/ws/tracking/{booking_id}?token={token}")
        for name, url in (("w1", w1.url), ("w2", w2.url), ("gateway", p.base_url))}
    closing = {name: asyncio.create_task(_closed_at(ws)) for name, ws in sockets.items()}

    started = time.monotonic()
    assert await Client(http, w1.url, admin.token).post(
        f"/api/v1/admin/users/{victim_id}/ban") == (
        200, {"success": True, "data": {"message": "user banned successfully"}})

    async def refused_on(c: Client) -> float | None:
        if await c.get("/api/v1/bookings") == (401, BAD_TOKEN):
            return time.monotonic() - started
        return None
    took = {name: await wait_until(lambda c=c: refused_on(c), REVOCATION_S * 2, 0.02,
                                   what=f"ban seen on {name}")
            for name, c in on.items()}
    done, _ = await asyncio.wait(closing.values(), timeout=REVOCATION_S * 2)
    assert len(done) == len(closing), "a banned user's WebSocket stayed open"
    closed = {name: task.result() for name, task in closing.items()}
    # Which worker's agent wrote the entry (the other one read it from the changelog).
    writer = [w.name for w in (w1, w2)
              if f"identity.user_banned for user {victim_id}" in w.log_path.read_text()]
    print(f"ban on w1 → token refused on w2 after {took['w2'] * 1000:.0f} ms "
          f"(w1: {took['w1'] * 1000:.0f} ms); WebSocket closed on w2 after "
          f"{(closed['w2'][0] - started) * 1000:.0f} ms (w1: "
          f"{(closed['w1'][0] - started) * 1000:.0f} ms, through the gateway: "
          f"{(closed['gateway'][0] - started) * 1000:.0f} ms); table entry written by {writer}")
    for name in on:
        assert took[name] < REVOCATION_S, (name, took)
    for name, (at, code) in closed.items():  # the gateway passes the worker's code on
        assert code == 4401 and at - started < REVOCATION_S, (name, at - started, code)
    # Through the gateway, whichever worker answers, and on the WebSocket handshake.
    gateway = Client(http, p.base_url, token)
    for _ in range(4):
        assert await gateway.get("/api/v1/auth/profile") == (401, BAD_TOKEN)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refusal:
        await http.ws_connect(p.base_url.replace("http", "ws", 1)
                              + f"/ws/tracking/{booking_id}?token={token}")
    assert refusal.value.status == 401

    # A worker that starts later (empty data directory) recovers the ban from the changelog
    # before it reports ready.
    w3 = p.start_worker("w3")
    await p.wait_ready(w3)
    assert await Client(http, w3.url, token).get("/api/v1/bookings") == (401, BAD_TOKEN)


# ---------------------------------------------------------------- profile

async def test_update_profile(platform: Platform, new_client) -> None:
    owner = await new_client("owner")
    status, body = await owner.put("/api/v1/auth/profile", {
        "full_name": "Siti Binti Ali", "phone": "0198765432",
        "avatar_url": "https://cdn.kilat.my/a.png"})
    assert status == 200, body
    # A local Malaysian number is stored in E.164.
    assert body["data"] == {**owner.user, "full_name": "Siti Binti Ali", "phone": "+60198765432",
                            "avatar_url": "https://cdn.kilat.my/a.png"}
    # Empty strings leave fields as they are.
    status, body = await owner.put("/api/v1/auth/profile",
                                   {"full_name": "", "phone": "", "avatar_url": ""})
    assert status == 200 and body["data"]["full_name"] == "Siti Binti Ali"
    assert (await owner.get("/api/v1/auth/profile"))[1]["data"] == body["data"]
    status, body = await owner.put("/api/v1/auth/profile", {"phone": " 012-345 6789 "})
    assert status == 200 and body["data"]["phone"] == "+60123456789"
    status, body = await owner.put("/api/v1/auth/profile", {"phone": "+44 20 7946 0958"})
    assert status == 200 and body["data"]["phone"] == "+442079460958"
    for phone in ("1" * 21, "12", "call me", "+60 12 345 6789 ext 9", "<script>"):
        assert await owner.put("/api/v1/auth/profile", {"phone": phone}) == (
            400, err("phone must be a phone number in E.164 form, e.g. +60123456789")), phone
    for url in ("javascript:alert(document.cookie)", "JAVASCRIPT:alert(1)", "data:text/html,x",
                "//evil.test/a.png", "/a.png", "ftp://x.test/a.png", "https://", "http://a b.test/",
                "https://x.test/" + "a" * 2100):
        assert await owner.put("/api/v1/auth/profile", {"avatar_url": url}) == (
            400, err("avatar_url must be an http or https URL")), url
    assert (await owner.get("/api/v1/auth/profile"))[1]["data"]["avatar_url"] == (
        "https://cdn.kilat.my/a.png")
    assert await owner.put("/api/v1/auth/profile", {"full_name": "n" * 256}) == (
        400, err("full_name must be at most 255 characters"))
    status, body = await owner.put("/api/v1/auth/profile", {"full_name": 42})
    assert status == 400 and "FullName" in body["error"]
    rows = platform.sql("SELECT version FROM users WHERE id = %s", (owner.user["id"],))
    assert rows == [{"version": 4}]  # the three successful changes


async def test_update_profile_lost_update_is_409(platform: Platform, new_client) -> None:
    """A writer that read the user before another transaction changed it gets 409."""
    owner = await new_client("owner")
    other = psycopg2.connect(platform.database_url)
    try:
        cur = other.cursor()
        cur.execute("UPDATE users SET full_name = 'Changed Elsewhere', version = version + 1 "
                    "WHERE id = %s", (owner.user["id"],))
        put = asyncio.ensure_future(owner.put("/api/v1/auth/profile", {"full_name": "Mine"}))

        async def blocked() -> bool:
            rows = platform.sql(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE 'UPDATE users%%'")
            return rows[0]["n"] == 1
        await wait_until(blocked, 30, what="profile update waiting on the row lock")
        other.commit()
    finally:
        other.close()
    assert await put == (409, err("user was modified by another transaction"))
    rows = platform.sql("SELECT full_name, version FROM users WHERE id = %s", (owner.user["id"],))
    assert rows == [{"full_name": "Changed Elsewhere", "version": 2}]


# ---------------------------------------------------------------- password reset

async def reset_token_from_log(platform: Platform, email: str) -> str:
    pattern = re.compile(rf"password reset link for {re.escape(email)}: \S+\?token=([0-9a-f]{{64}})")

    async def found():
        matches = pattern.findall(platform.workers[0].log_path.read_text(errors="replace"))
        return matches[-1] if matches else None
    return await wait_until(found, 15, what="reset link in the worker log")


async def test_forgot_and_reset_password(platform: Platform, client: Client, new_client) -> None:
    owner = await new_client("owner")
    email = owner.user["email"]
    for target in (unique_email("ghost"), email.upper()):
        async with client.session.post(client.base + "/api/v1/auth/forgot-password",
                                       json={"email": target}) as resp:
            assert resp.status == 202 and await resp.read() == b""
    token = await reset_token_from_log(platform, email)
    rows = platform.sql("SELECT token_hash, expires_at - created_at AS ttl, used_at FROM "
                        "password_resets WHERE user_id = %s", (owner.user["id"],))
    assert len(rows) == 1 and rows[0]["token_hash"] != token and rows[0]["used_at"] is None
    assert abs(rows[0]["ttl"].total_seconds() - 3600) < 5
    (event,) = await platform.wait_event("identity.events", "identity.password_reset_requested",
                                         user_id=owner.user["id"])
    assert event["data"]["email"] == email and event["data"]["reset_token_hint"] == token[-4:]
    assert token not in str(event)

    assert await client.post("/api/v1/auth/reset-password",
                             {"token": token, "newPassword": "short"}) == (
        400, err("password must be at least 8 characters"))
    assert await client.post("/api/v1/auth/reset-password",
                             {"token": token, "newPassword": "p" * 73}) == (
        400, err("password must be at most 72 bytes"))
    assert await client.post("/api/v1/auth/reset-password",
                             {"token": token, "newPassword": "password1"}) == (
        400, err("password is too common"))
    assert await client.post("/api/v1/auth/reset-password",
                             {"token": token, "newPassword": email.upper()}) == (
        400, err("password must not be the same as the email"))
    for bad in ("0" * 64, "", "not hex"):
        assert await client.post("/api/v1/auth/reset-password",
                                 {"token": bad, "newPassword": "NewSecret456"}) == (
            400, err("invalid token"))
    assert await client.post("/api/v1/auth/reset-password",
                             {"token": token, "newPassword": "NewSecret456"}) == (
        200, {"success": True, "data": {"message": "password reset successful"}})
    assert await client.post("/api/v1/auth/reset-password",
                             {"token": token, "newPassword": "NewSecret789"}) == (
        400, err("token already used"))

    assert (await client.post("/api/v1/auth/login", {"email": email, "password": PASSWORD}))[0] == 401
    status, _ = await client.post("/api/v1/auth/login", {"email": email, "password": "NewSecret456"})
    assert status == 200
    # The sessions opened with the old password are gone.
    assert await client.post("/api/v1/auth/refresh", {"refresh_token": owner.refresh_token}) == (
        401, err("refresh token is expired or revoked"))

    # Expired tokens are refused.
    async with client.session.post(client.base + "/api/v1/auth/forgot-password",
                                   json={"email": email}) as resp:
        assert resp.status == 202
    second = await wait_until(lambda: _new_token(platform, email, token), 15,
                              what="second reset link")
    platform.sql("UPDATE password_resets SET expires_at = now() - interval '1 second' "
                 "WHERE used_at IS NULL AND user_id = %s", (owner.user["id"],))
    assert await client.post("/api/v1/auth/reset-password",
                             {"token": second, "newPassword": "NewSecret789"}) == (
        400, err("token expired"))

    status, body = await client.call("POST", "/api/v1/auth/forgot-password", data=b"not json",
                                     headers={"Content-Type": "application/json"})
    assert (status, body) == (400, {"success": False, "error": "invalid request body"})
    for body in ({}, {"email": None}, {"email": "not-an-email"}):  # always 202 otherwise
        async with client.session.post(client.base + "/api/v1/auth/forgot-password",
                                       json=body) as resp:
            assert resp.status == 202, body


async def _new_token(platform: Platform, email: str, previous: str) -> str | None:
    token = await reset_token_from_log(platform, email)
    return token if token != previous else None


async def _forgot(client: Client, email: str) -> None:
    async with client.session.post(client.base + "/api/v1/auth/forgot-password",
                                   json={"email": email}) as resp:
        assert resp.status == 202


async def test_only_the_newest_reset_link_works_and_a_reset_ends_every_session(
        platform: Platform, client: Client, new_client) -> None:
    owner = await new_client("owner")
    email = owner.user["email"]
    await _forgot(client, email)
    first = await reset_token_from_log(platform, email)
    await _forgot(client, email)
    second = await wait_until(lambda: _new_token(platform, email, first), 15,
                              what="second reset link")
    # Issuing a link spends every older one.
    assert await client.post("/api/v1/auth/reset-password",
                             {"token": first, "newPassword": "NewSecret456"}) == (
        400, err("token already used"))
    # A link that somehow coexists with the one used (issued concurrently) dies with the reset.
    stray = rules.new_reset_token()
    platform.sql("INSERT INTO password_resets (user_id, token_hash, expires_at) "
                 "VALUES (%s, %s, now() + interval '1 hour')",
                 (owner.user["id"], rules.token_hash(stray)))
    assert await client.post("/api/v1/auth/reset-password",
                             {"token": second, "newPassword": "NewSecret456"}) == (
        200, {"success": True, "data": {"message": "password reset successful"}})
    assert await client.post("/api/v1/auth/reset-password",
                             {"token": stray, "newPassword": "NewSecret789"}) == (
        400, err("token already used"))

    # Every session opened before the reset ends, access tokens included; a login right
    # after it (most likely within the same second) is not caught by it.
    status, body = await client.post("/api/v1/auth/login",
                                     {"email": email, "password": "NewSecret456"})
    assert status == 200, body
    await wait_refused(client, owner.token)
    assert (await client.get("/api/v1/bookings", token=body["data"]["access_token"]))[0] == 200
    (event,) = await platform.wait_event("identity.events", "identity.sessions_revoked",
                                         user_id=owner.user["id"])
    assert event["data"]["reason"] == "password_reset"


# ---------------------------------------------------------------- runner applications

def application(**fields) -> dict:
    return {"name": "Ahmad Faizal", "phone": "+60123334444",
            "icNumber": f"9{uuid.uuid4().int % 10**11:011d}", "vehicleType": "motorbike",
            "plateNumber": "WXY 1234", "petExperience": ["dogs", "cats"],
            "comfortableWithLivePets": True, "consentAcknowledged": True, **fields}


async def test_runner_application(platform: Platform, client: Client) -> None:
    first = application()
    status, body = await client.post("/api/v1/runners/apply", first)
    assert status == 201, body
    number = body["data"]["applicationId"]
    year = datetime.now(UTC).year
    code = f"[{rules.APPLICATION_ALPHABET}]{{{rules.APPLICATION_CODE_LENGTH}}}"
    assert re.fullmatch(rf"KR-{year}-{code}", number)
    status, body = await client.post("/api/v1/runners/apply", application(vehicleType="car"))
    assert status == 201
    second = body["data"]["applicationId"]
    assert re.fullmatch(rf"KR-{year}-{code}", second) and second != number

    # A repeated IC number gets the same kind of answer (the form does not reveal which IC
    # numbers are registered); the repeat is kept for an admin to review.
    status, body = await client.post("/api/v1/runners/apply", {**application(), "icNumber":
                                                                first["icNumber"]})
    assert status == 201 and set(body) == {"success", "data"} and set(body["data"]) == {
        "applicationId"}
    assert re.fullmatch(rf"KR-{year}-{code}", body["data"]["applicationId"])
    rows = platform.sql("SELECT application_id, status, pet_experience, vehicle_type FROM "
                        "runner_applications WHERE ic_number = %s ORDER BY submitted_at",
                        (first["icNumber"],))
    assert rows == [
        {"application_id": number, "status": "pending_review", "pet_experience": ["dogs", "cats"],
         "vehicle_type": "motorbike"},
        {"application_id": body["data"]["applicationId"], "status": "duplicate_review",
         "pet_experience": ["dogs", "cats"], "vehicle_type": "motorbike"}]

    cases = [
        ({"name": " "}, "name is required"),
        ({"phone": ""}, "phone is required"),
        ({"icNumber": ""}, "icNumber is required"),
        ({"vehicleType": "van"}, "vehicleType must be one of: motorbike, car, bicycle"),
        ({"plateNumber": ""}, "plateNumber is required"),
        ({"petExperience": ["dogs", "dragons"]},
         "petExperience entries must be one of: dogs, cats, birds, fish, small_pets, vet_trips"),
        ({"consentAcknowledged": False}, "consent must be acknowledged"),
        ({"name": "", "consentAcknowledged": False}, "name is required"),
    ]
    for fields, text in cases:
        assert await client.post("/api/v1/runners/apply", application(**fields)) == (
            400, err(text)), fields


# ---------------------------------------------------------------- referrals

async def test_referral_code_and_stats(platform: Platform, client: Client, new_client) -> None:
    referrer = await new_client("owner")
    status, body = await referrer.get("/api/v1/referrals/code")
    assert status == 200, body
    code = body["data"]["referral_code"]
    assert re.fullmatch(r"REF-[0-9a-f]{8}", code)
    assert await referrer.get("/api/v1/referrals/code") == (200, body)
    assert await referrer.get("/api/v1/referrals/me") == (200, {"success": True, "data": {
        "referral_code": code, "total_referrals": 0, "referrals": []}})

    email = unique_email("nope")
    assert await register(client, email=email, referral_code="REF-00000000") == (
        400, err("invalid referral code"))
    assert await register(client, email=email, referral_code="bogus") == (
        400, err("invalid referral code"))
    assert platform.sql("SELECT id FROM users WHERE email = %s", (email,)) == []

    referee = await new_client("owner", referral_code=code.upper().replace("REF-", "ref-"))
    status, body = await referrer.get("/api/v1/referrals/me")
    assert status == 200
    (item,) = body["data"]["referrals"]
    assert body["data"]["total_referrals"] == 1
    assert set(item) == {"id", "referee_id", "reward_amount_cents", "referrer_credited",
                         "referee_credited", "created_at"}
    assert item["referee_id"] == referee.user["id"] and item["reward_amount_cents"] == 500
    assert item["referrer_credited"] is False and item["referee_credited"] is False
    # The referee gets a code of their own, distinct from the referrer's.
    other = (await referee.get("/api/v1/referrals/code"))[1]["data"]["referral_code"]
    assert other != code


async def test_referral_credited_once_when_first_booking_completes(platform: Platform,
                                                                   new_client) -> None:
    referrer = await new_client("owner")
    code = (await referrer.get("/api/v1/referrals/code"))[1]["data"]["referral_code"]
    referee = await new_client("owner", referral_code=code)
    referral_id = (await referrer.get("/api/v1/referrals/me"))[1]["data"]["referrals"][0]["id"]

    booking_id, later_booking = str(uuid.uuid4()), str(uuid.uuid4())

    def completed(bid: str) -> bytes:
        return new_event("service-booking", "booking.completed", {
            "booking_id": bid, "booking_number": "KLT-20261125-0001",
            "runner_id": str(uuid.uuid4()), "owner_id": referee.user["id"],
            "final_price_cents": 2500, "currency": "MYR"}).to_json()

    # Only paid bookings count: a completion whose booking has no held/released payment (a
    # booking nobody paid for) credits nothing; the paid one after it is credited.
    unpaid_booking = str(uuid.uuid4())
    for bid, status in ((booking_id, "released"), (later_booking, "released")):
        platform.sql("INSERT INTO payments (booking_id, owner_id, escrow_status, amount_cents, "
                     "platform_fee_cents, runner_payout_cents, booking_amount_cents) "
                     "VALUES (%s, %s, %s, 2500, 375, 2125, 2500) RETURNING id",
                     (bid, referee.user["id"], status))
    await platform.produce("booking.events", booking_id, completed(unpaid_booking))
    first = completed(booking_id)
    later = new_event("service-booking", "booking.completed", {
        "booking_id": later_booking, "booking_number": "KLT-20261125-0002",
        "runner_id": str(uuid.uuid4()), "owner_id": referee.user["id"],
        "final_price_cents": 900, "currency": "MYR"})
    # Same key, so the partition delivers: first, its redelivery, then a later completion.
    await platform.produce("booking.events", booking_id, first)
    await platform.produce("booking.events", booking_id, first)
    await platform.produce("booking.events", booking_id, later.to_json())

    async def later_processed() -> bool:
        return bool(platform.sql("SELECT 1 FROM processed_events WHERE consumer = "
                                 "'identity-referrals' AND event_id = %s", (later.id,)))
    await wait_until(later_processed, 30, what="identity agent to reach the last event")

    rows = platform.sql("SELECT referrer_credited, referee_credited, credited_booking_id "
                        "FROM referrals WHERE id = %s", (referral_id,))
    assert rows == [{"referrer_credited": True, "referee_credited": True,
                     "credited_booking_id": booking_id}]
    (event,) = await platform.wait_event("identity.events", "identity.referral_credited",
                                         referral_id=referral_id)
    assert event["_key"] == referrer.user["id"]
    assert event["data"]["referrer_id"] == referrer.user["id"]
    assert event["data"]["referee_id"] == referee.user["id"]
    assert event["data"]["reward_amount_cents"] == 500 and event["data"]["booking_id"] == booking_id
    assert platform.sql("SELECT count(*) AS n FROM outbox WHERE value->>'type' = "
                        "'identity.referral_credited' AND value->'data'->>'referral_id' = %s",
                        (referral_id,)) == [{"n": 1}]
    status, body = await referrer.get("/api/v1/referrals/me")
    assert body["data"]["referrals"][0]["referrer_credited"] is True


async def test_booking_completed_without_owner_is_dead_lettered(platform: Platform) -> None:
    booking_id = str(uuid.uuid4())
    await platform.produce("booking.events", booking_id, new_event(
        "service-booking", "booking.completed", {"booking_id": booking_id}).to_json())

    async def dead() -> list:
        return [d for d in await platform.read_topic("kilat.dead-letter")
                if d.get("_key") == booking_id and d.get("consumer") == "identity-referrals"]
    (item,) = await wait_until(dead, 30, what="dead letter")
    assert "owner_id" in item["reason"]


# ---------------------------------------------------------------- administration

async def test_admin_user_management(platform: Platform, client: Client, new_client,
                                     new_admin: Client) -> None:
    assert new_admin.user["role"] == "admin" and new_admin.user["is_verified"] is True
    victim = await new_client("runner")

    status, body = await new_admin.get("/api/v1/admin/users?page=1&limit=2")
    assert status == 200, body
    total = body["pagination"]["total"]
    assert len(body["data"]) == 2 and set(body["data"][0]) <= USER_KEYS | {"avatar_url"}
    assert body["pagination"] == {"total": total, "page": 1, "limit": 2,
                                  "total_pages": -(-total // 2)}
    assert body["data"][0]["id"] == victim.user["id"]  # newest first
    for query, limit in (("limit=0", 20), ("limit=101", 20), ("limit=100", 100)):
        status, body = await new_admin.get("/api/v1/admin/users?page=0&" + query)
        assert status == 200 and body["pagination"]["limit"] == limit
        assert body["pagination"]["page"] == 1
    status, body = await new_admin.get(f"/api/v1/admin/users?page={total + 1}&limit=1")
    assert status == 200 and body["data"] == []

    assert await new_admin.get("/api/v1/admin/users/" + victim.user["id"]) == (
        200, {"success": True, "data": victim.user})
    assert await new_admin.get("/api/v1/admin/users/not-a-uuid") == (
        400, {"success": False, "error": "invalid user ID"})
    missing = str(uuid.uuid4())
    assert await new_admin.get("/api/v1/admin/users/" + missing) == (404, {
        "success": False, "error": "User not found",
        "detail": f"User with id '{missing}' was not found"})

    status, body = await new_admin.get("/api/v1/admin/stats/users")
    assert status == 200
    counts = {r["role"]: r["n"] for r in platform.sql(
        "SELECT role, count(*) AS n FROM users GROUP BY role")}
    assert body["data"] == {"total_users": sum(counts.values()),
                            "by_role": {r: counts.get(r, 0)
                                        for r in ("owner", "runner", "admin", "shop")}}

    # Ban: sessions revoked, no login, no refresh, identity routes refused.
    assert await new_admin.post(f"/api/v1/admin/users/{victim.user['id']}/ban") == (
        200, {"success": True, "data": {"message": "user banned successfully"}})
    banned = err("account is banned")
    assert await client.post("/api/v1/auth/login", {"email": victim.user["email"],
                                                    "password": PASSWORD}) == (403, banned)
    assert await client.post("/api/v1/auth/refresh", {"refresh_token": victim.refresh_token}) == (
        401, err("refresh token is expired or revoked"))
    # The victim's unexpired access token is refused on every domain (not only the profile).
    await wait_refused(client, victim.token)
    rows = platform.sql("SELECT is_banned, is_verified, version FROM users WHERE id = %s",
                        (victim.user["id"],))
    assert rows == [{"is_banned": True, "is_verified": False, "version": 2}]
    await platform.wait_event("identity.events", "identity.user_banned",
                              user_id=victim.user["id"], banned_by=new_admin.user["id"])
    # Banning again is harmless; banning yourself or nobody is refused.
    assert (await new_admin.post(f"/api/v1/admin/users/{victim.user['id']}/ban"))[0] == 200
    assert await new_admin.post(f"/api/v1/admin/users/{new_admin.user['id']}/ban") == (
        400, err("you cannot ban yourself"))
    assert (await new_admin.post(f"/api/v1/admin/users/{missing}/ban"))[0] == 404
    assert await new_admin.post("/api/v1/admin/users/xyz/ban") == (
        400, {"success": False, "error": "invalid user ID"})

    # Unban: signing in works again; tokens from before the ban stay void.
    assert await new_admin.post(f"/api/v1/admin/users/{victim.user['id']}/unban") == (
        200, {"success": True, "data": {"message": "user unbanned successfully"}})
    await platform.wait_event("identity.events", "identity.user_unbanned",
                              user_id=victim.user["id"], unbanned_by=new_admin.user["id"])
    status, body = await client.post("/api/v1/auth/login", {"email": victim.user["email"],
                                                            "password": PASSWORD})
    assert status == 200, body
    fresh = body["data"]["access_token"]
    # The unban reaches the revocation table within 2 s: the new token then works.
    await wait_until(lambda: _works(client, fresh), REVOCATION_S, 0.05, what="unbanned token")
    assert await refused(client, victim.token)
    assert (await new_admin.post(f"/api/v1/admin/users/{victim.user['id']}/unban"))[0] == 200
    assert (await new_admin.post(f"/api/v1/admin/users/{missing}/unban"))[0] == 404
    assert await new_admin.post("/api/v1/admin/users/xyz/unban") == (
        400, {"success": False, "error": "invalid user ID"})
    assert await victim.post(f"/api/v1/admin/users/{victim.user['id']}/unban",
                             token=fresh) == (403, NO_ROLE)


async def _works(c: Client, token: str) -> bool:
    return (await c.get("/api/v1/bookings", token=token))[0] == 200


async def test_create_admin_command_refuses_duplicates_and_bad_input(platform: Platform,
                                                                     new_admin: Client) -> None:
    async def run(*args: str) -> tuple[int, str]:
        code, out, err = await platform.run_kilat("create-admin", *args)
        return code, out + err

    email = new_admin.user["email"]
    code, out = await run("--email", email.upper(), "--password", "Another-Secret-1",
                          "--full-name", "Dup")
    assert code != 0 and f"User with email '{email}' already exists" in out
    code, out = await run("--email", unique_email("adm"), "--password", "short",
                          "--full-name", "X")
    assert code != 0 and "password must be at least 8 characters" in out
    code, out = await run("--email", unique_email("adm"), "--password", "password123",
                          "--full-name", "X")
    assert code != 0 and "password is too common" in out
    assert platform.sql("SELECT count(*) AS n FROM users WHERE lower(email) = %s",
                        (email,)) == [{"n": 1}]


# ---------------------------------------------------------------- pure rules

def test_rules_without_io() -> None:
    assert rules.normalize_referral_code(" ref-1A2B3C4D ") == "REF-1a2b3c4d"
    for bad in ("REF-1a2b3c4", "REF-1a2b3c4g", "XYZ-1a2b3c4d", ""):
        assert rules.normalize_referral_code(bad) is None
    assert re.fullmatch(r"REF-[0-9a-f]{8}", rules.new_referral_code())
    assert rules.normalize_phone("  +60123456789 ") == "+60123456789"
    assert rules.normalize_phone(None) == ""
    for bad in ("123456", "+1234567890123456", "60-1234567"):
        try:
            rules.normalize_phone(bad)
        except rules.RuleViolation as exc:
            assert str(exc) == f"invalid phone format: {bad}"
        else:
            raise AssertionError(bad)
    numbers = {rules.application_number(2026) for _ in range(200)}
    assert len(numbers) == 200 and all(re.fullmatch(r"KR-2026-[A-HJKMNP-Z2-9]{8}", n)
                                       for n in numbers)
    for password, email in (("12345678", None), ("PassWord", None), ("Ana.Lee@x.my", "ana.lee@x.my"),
                            ("ana.lee1", "Ana.Lee1@x.my")):
        try:
            rules.check_password(password, email)
        except rules.RuleViolation:
            pass
        else:
            raise AssertionError(password)
    rules.check_password("Secret123!", "ana@x.my")
    assert rules.login_counters("acc", "1.2.3.4") == ("aa:acc@1.2.3.4", "ad:1.2.3.4", "ac:acc")
    limits = rules.ThrottleLimits(account_at_address=5, address=20, account=50)
    assert [rules.locks_after("aa:x@y", n, limits) for n in (4, 5)] == [False, True]
    assert [rules.locks_after("ad:y", n, limits) for n in (19, 20)] == [False, True]
    assert rules.retry_after([None, 90.0, 100.5], 80.0) == 21
    assert rules.retry_after([None, 79.0], 80.0) is None
    token = rules.new_reset_token()
    assert re.fullmatch(r"[0-9a-f]{64}", token) and rules.token_hash(token) != token
    assert rules.profile_changes({"full_name": "A", "phone": ""},
                                 rules.ProfileChange(full_name="A", phone=" ")) == {}


# ---------------------------------------------------------------- revocation rules (pure)

def test_revocation_record_rules() -> None:
    keep = 1_000
    rec = rules.apply_revocation(None, rules.SESSION_REVOKED, {"session_id": "s1"}, 100,
                                 keep_ms=keep, now_ms=100)
    assert rules.token_revoked(rec, "s1", 50) and rules.token_revoked(rec, "s1", 5_000)
    assert not rules.token_revoked(rec, "s2", 50) and not rules.token_revoked(rec, "", 50)
    # A reset or logout voids what was issued before it, not what came after (ms precision).
    rec = rules.apply_revocation(rec, rules.SESSIONS_REVOKED, {}, 2_000, keep_ms=keep,
                                 now_ms=200)
    assert rules.token_revoked(rec, "s9", 1_999) and not rules.token_revoked(rec, "s9", 2_000)
    # An older event replayed later does not move the line back.
    assert rules.apply_revocation(rec, rules.SESSIONS_REVOKED, {}, 1_000, keep_ms=keep,
                                  now_ms=300)["void_before_ms"] == 2_000
    # Revoked sessions are forgotten once every token of theirs has expired.
    later = rules.apply_revocation(rec, rules.SESSIONS_REVOKED, {}, 2_000, keep_ms=keep,
                                   now_ms=100 + keep + 1)
    assert later["sessions"] == {}
    # A ban refuses every token, even one issued after it; an unban lifts only that.
    banned = rules.apply_revocation(rec, rules.USER_BANNED, {}, 3_000, keep_ms=keep, now_ms=300)
    assert rules.token_revoked(banned, "s9", 10_000)
    unbanned = rules.apply_revocation(banned, rules.USER_UNBANNED, {}, 4_000, keep_ms=keep,
                                      now_ms=400)
    assert rules.token_revoked(unbanned, "s9", 2_999)
    assert not rules.token_revoked(unbanned, "s9", 4_001)
    assert not rules.token_revoked(None, "s1", 0)


# ---------------------------------------------------------------- sign-in throttle (issue 13 #6)

THROTTLE_WINDOW_S = 40


async def throttled_platform(p: Platform, http) -> Client:
    """Two workers behind a gateway that believes X-Forwarded-For from the test (so a test can
    sign in "from" several addresses), with a short throttle window and small limits."""
    p.extra_env.update(LOGIN_WINDOW_S=str(THROTTLE_WINDOW_S), LOGIN_MAX_FAILURES="5",
                       LOGIN_MAX_FAILURES_PER_ADDRESS="8", LOGIN_MAX_FAILURES_PER_ACCOUNT="30")
    workers = [p.start_worker(name) for name in ("w1", "w2")]
    for worker in workers:
        await p.wait_ready(worker)
    await p.wait_ready(p.start_gateway(RATE_LIMIT_PER_MIN="100000",
                                       GATEWAY_TRUSTED_PROXIES="127.0.0.1"), "/health")
    return Client(http, p.base_url)


async def login_from(client: Client, address: str, email: str, password: str,
                     **headers: str):
    return await client.call("POST", "/api/v1/auth/login",
                             {"email": email, "password": password},
                             headers={"X-Forwarded-For": address, **headers})


async def fail_until_locked(client: Client, address: str, email: str) -> int:
    """Wrong passwords until sign-in answers 429 on both workers (round robin: two in a row);
    the number of failures (401) it took. Failures spread over two windows may need up to
    twice the limit; the lock reaches the other worker through the global table."""
    failures, locked_in_a_row = 0, 0

    async def locked() -> bool:
        nonlocal failures, locked_in_a_row
        status, body = await login_from(client, address, email, "Wrong-password-1")
        if status == 401:
            failures += 1
            locked_in_a_row = 0
            return False
        assert status == 429, body
        locked_in_a_row += 1
        return locked_in_a_row >= 2
    await wait_until(locked, 30, 0.05, f"sign-in of {email} from {address} locked")
    return failures


async def test_sign_in_throttle(fresh_platform: Platform, http) -> None:
    """20 wrong passwords then the right one: 429 with Retry-After, on both workers; the
    address lock, the owner's other address, the account-wide lock, and the window's end."""
    p = fresh_platform
    client = await throttled_platform(p, http)

    async def account() -> str:
        email = unique_email("throttle")
        status, body = await register(client, email=email)
        assert status == 201, body
        return email

    # 20 wrong passwords in a row, then the right one. A client-chosen X-Real-IP changes
    # nothing: the gateway replaces it with the address it resolved.
    victim = await account()
    statuses = [(await login_from(client, "192.0.2.10", victim, f"Wrong-{i}-pass",
                                  **{"X-Real-IP": f"10.9.8.{i}"}))[0]
                for i in range(20)]
    # Locked from the 5th failure on, on both workers (round robin) once the lock has gone
    # through the agents and the global table: in practice one or two attempts later.
    assert statuses[:5] == [401] * 5 and set(statuses) <= {401, 429}, statuses
    assert statuses[-6:] == [429] * 6, statuses
    await fail_until_locked(client, "192.0.2.10", victim)
    started = time.time()
    status, body = await login_from(client, "192.0.2.10", victim, PASSWORD)
    assert (status, body["error"], body["success"]) == (
        429, "too many failed login attempts", False), body
    async with client.session.post(client.base + "/api/v1/auth/login",
                                   json={"email": victim, "password": PASSWORD},
                                   headers={"X-Forwarded-For": "192.0.2.10"}) as resp:
        assert resp.status == 429
        retry_after = int(resp.headers["Retry-After"])
    assert 1 <= retry_after <= THROTTLE_WINDOW_S
    assert body["detail"].startswith("try again in ")

    # The stranger's failures do not lock the owner, who signs in from their own address.
    assert (await login_from(client, "192.0.2.20", victim, PASSWORD))[0] == 200

    # The lock ends with its window (Retry-After said when), not before: then the right
    # password works again from the locked address.
    async def released() -> bool:
        return (await login_from(client, "192.0.2.10", victim, PASSWORD))[0] == 200
    await wait_until(released, THROTTLE_WINDOW_S + 10, 0.5, "lock released")
    assert retry_after - 2 <= time.time() - started <= retry_after + 5

    # One address failing on many accounts is locked for every account.
    bystander = await account()
    failures = 0

    async def address_locked() -> bool:
        nonlocal failures
        status, _ = await login_from(client, "192.0.2.30", unique_email("nobody"), PASSWORD)
        failures += status == 401
        return status == 429 and (
            await login_from(client, "192.0.2.30", bystander, PASSWORD))[0] == 429
    await wait_until(address_locked, 30, 0.05, "address locked")
    assert failures >= 8
    assert (await login_from(client, "192.0.2.31", bystander, PASSWORD))[0] == 200

    # Guessing one account from many addresses: the account is locked everywhere (30 here).
    spread = await account()
    total = 0
    for n in range(10):
        total += await fail_until_locked(client, f"198.51.100.{n}", spread)
        if (await login_from(client, "198.51.100.200", spread, PASSWORD))[0] == 429:
            break
    assert total >= 30
    assert (await login_from(client, "198.51.100.201", spread, PASSWORD))[0] == 429
