"""Identity domain through the gateway: sign-up, sessions, profile, password reset, runner
applications, referrals (credited from booking.events) and user administration."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import uuid
from datetime import UTC, datetime

import jwt
import psycopg2

from domain import identity as rules
from models.events import new_event
from tests.conftest import Client
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

    # The spent token is refused, the new one works (once).
    assert await client.post("/api/v1/auth/refresh", {"refresh_token": old}) == (
        401, err("refresh token is expired or revoked"))
    status, body = await client.post("/api/v1/auth/refresh", {"refresh_token": new})
    assert status == 200, body
    rows = platform.sql("SELECT jti, revoked, replaced_by FROM refresh_tokens WHERE user_id = %s "
                        "ORDER BY created_at", (owner.user["id"],))
    assert [r["revoked"] for r in rows] == [True, True, False]
    assert rows[0]["replaced_by"] == rows[1]["jti"] and rows[1]["replaced_by"] == rows[2]["jti"]

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


async def test_logout_revokes_every_session(platform: Platform, client: Client, new_client) -> None:
    owner = await new_client("owner")
    status, body = await client.post("/api/v1/auth/login",
                                     {"email": owner.user["email"], "password": PASSWORD})
    assert status == 200
    second = body["data"]["refresh_token"]
    assert await owner.post("/api/v1/auth/logout") == (
        200, {"success": True, "data": {"message": "logged out successfully"}})
    for token in (owner.refresh_token, second):
        assert await client.post("/api/v1/auth/refresh", {"refresh_token": token}) == (
            401, err("refresh token is expired or revoked"))
    assert platform.sql("SELECT count(*) AS n FROM refresh_tokens WHERE user_id = %s AND NOT "
                        "revoked", (owner.user["id"],)) == [{"n": 0}]


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
    assert re.fullmatch(rf"KR-{year}-\d{{5}}", number)
    status, body = await client.post("/api/v1/runners/apply", application(vehicleType="car"))
    assert status == 201
    assert body["data"]["applicationId"] == f"KR-{year}-{int(number[-5:]) + 1:05d}"

    assert await client.post("/api/v1/runners/apply", {**application(), "icNumber":
                                                       first["icNumber"]}) == (
        409, err(f"RunnerApplication with ic_number '{first['icNumber']}' already exists"))
    rows = platform.sql("SELECT status, pet_experience, vehicle_type FROM runner_applications "
                        "WHERE ic_number = %s", (first["icNumber"],))
    assert rows == [{"status": "pending_review", "pet_experience": ["dogs", "cats"],
                     "vehicle_type": "motorbike"}]

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
    # A failed application does not burn a number.
    status, body = await client.post("/api/v1/runners/apply", application())
    assert body["data"]["applicationId"] == f"KR-{year}-{int(number[-5:]) + 2:05d}"


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
    assert await victim.get("/api/v1/auth/profile") == (403, banned)
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
    assert rules.application_number(2026, 7) == "KR-2026-00007"
    token = rules.new_reset_token()
    assert re.fullmatch(r"[0-9a-f]{64}", token) and rules.token_hash(token) != token
    assert rules.profile_changes({"full_name": "A", "phone": ""},
                                 rules.ProfileChange(full_name="A", phone=" ")) == {}
