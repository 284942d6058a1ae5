"""HTTP views of the identity domain: sign-up, sessions, profile, password reset, runner
applications, referrals and user administration (reference §2.1, DESIGN item 5).

Each view reads like: parse → decide (domain.identity) → persist + emit (one transaction).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web
from aiokafka.errors import KafkaError
from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from core.config import settings
from core.db import Connection, Row, db
from core.outbox import emit
from core.security import (
    InvalidToken,
    decode_token,
    hash_password,
    issue_access_token,
    issue_refresh_token,
    new_session_id,
    verify_password,
)
from domain import identity as rules
from kilat import identity_events
from models import events as ev
from stores import identity as store
from tables.login_throttle import lock_ends
from web.http import (
    ApiError,
    Body,
    already_exists,
    authenticate,
    conflict,
    created,
    forbidden,
    message,
    not_found,
    ok,
    page_params,
    paginated,
    parse_body,
    path_uuid,
    require_role,
    unauthorized,
    validation_error,
)

routes = web.RouteTableDef()
log = logging.getLogger("kilat.identity")

SOURCE = "service-identity"
PRODUCE_TIMEOUT_S = 10.0
# Where the web app's reset form lives; the link is what the notification channel will send.
RESET_URL = os.environ.get("KILAT_PASSWORD_RESET_URL", "http://localhost:3000/reset-password")
# Verifying against a real hash keeps a failed login for an unknown email as slow as one for
# a known email (no account enumeration by timing).
_DUMMY_HASH = hash_password(secrets.token_hex(16))


# ---------------------------------------------------------------- request bodies

def _required(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("missing", "field required")
    return value


def _email(value: str) -> str:
    _required(value)
    if not rules.is_email(value):
        raise PydanticCustomError("email", "value is not a valid email address")
    return value.strip()


class RegisterRequest(Body):
    email: str
    phone: str | None = None
    full_name: str
    password: str
    role: Literal["owner", "runner", "admin", "shop"]
    referral_code: str | None = None

    check_email = field_validator("email")(_email)

    @field_validator("full_name")
    @classmethod
    def check_full_name(cls, value: str) -> str:
        _required(value)
        if len(value.strip()) > rules.MAX_NAME_LENGTH:
            raise PydanticCustomError("string_too_long", "too long")
        return value

    @field_validator("password")
    @classmethod
    def check_password(cls, value: str) -> str:
        _required(value)
        if len(value) < rules.MIN_PASSWORD_LENGTH:
            raise PydanticCustomError("string_too_short", "too short")
        if len(value.encode()) > rules.MAX_PASSWORD_BYTES:
            raise PydanticCustomError("string_too_long", "too long")
        return value


class LoginRequest(Body):
    email: str
    password: str

    check_email = field_validator("email")(_email)
    check_password = field_validator("password")(_required)


class RefreshRequest(Body):
    refresh_token: str

    check_token = field_validator("refresh_token")(_required)


class UpdateProfileRequest(Body):
    full_name: str | None = None
    phone: str | None = None
    avatar_url: str | None = None


class ForgotPasswordRequest(Body):
    email: str = ""  # missing or unknown: still 202 (no enumeration)


class ResetPasswordRequest(Body):
    token: str = ""
    new_password: str = Field("", alias="newPassword")


class RunnerApplyRequest(Body):
    name: str = ""
    phone: str = ""
    ic_number: str = Field("", alias="icNumber")
    vehicle_type: str = Field("", alias="vehicleType")
    plate_number: str = Field("", alias="plateNumber")
    pet_experience: list[str] | None = Field(None, alias="petExperience")
    comfortable_with_live_pets: bool = Field(False, alias="comfortableWithLivePets")
    consent_acknowledged: bool = Field(False, alias="consentAcknowledged")


# ---------------------------------------------------------------- helpers

def user_dto(user: Row) -> dict[str, Any]:
    """UserDTO: `avatar_url` is omitted when empty, as the contract's omitempty does."""
    dto = {
        "id": user["id"], "email": user["email"], "phone": user["phone"] or "",
        "full_name": user["full_name"], "role": user["role"], "is_verified": user["is_verified"],
    }
    if user.get("avatar_url"):
        dto["avatar_url"] = user["avatar_url"]
    dto["created_at"] = user["created_at"]
    return dto


def _rule(exc: rules.RuleViolation) -> ApiError:
    return validation_error(str(exc))


def _banned() -> ApiError:
    return forbidden(rules.BANNED)


async def _in_thread(fn, *args):
    """bcrypt is CPU-bound (~50 ms): keep it off the worker's event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def start_session(conn: Connection, user: Row,
                        session_id: str | None = None) -> tuple[dict[str, Any], str]:
    """A new access/refresh pair (AuthResponse) and the refresh token's jti; the refresh
    token is remembered, hashed, server-side. Without `session_id` this is a new session
    (a login); a refresh rotation passes its session on."""
    session_id = session_id or new_session_id()
    access = issue_access_token(user["id"], user["email"], user["role"], session_id)
    refresh, jti, exp = issue_refresh_token(user["id"], session_id)
    await store.store_refresh_token(
        conn, user_id=user["id"], jti=jti, token_hash=rules.token_hash(refresh),
        expires_at=datetime.fromtimestamp(exp, UTC), session_id=session_id)
    return {"access_token": access, "refresh_token": refresh, "user": user_dto(user)}, jti


def _now_ms() -> int:
    return int(time.time() * 1000)


async def end_sessions(conn: Connection, user_id: str, reason: str, **extra: Any) -> None:
    """End every session of the user: refresh tokens revoked here, and every access token
    issued until now refused on every worker once the event reaches the revocation table."""
    await store.revoke_user_refresh_tokens(conn, user_id)
    await emit(conn, ev.IDENTITY_EVENTS, user_id, SOURCE, rules.SESSIONS_REVOKED, {
        "user_id": user_id, "reason": reason, "before_ms": _now_ms(), **extra})


async def end_session(conn: Connection, user_id: str, session_id: str, reason: str) -> None:
    """End one session (the whole refresh-token family, newer tokens included)."""
    await store.revoke_session_refresh_tokens(conn, session_id)
    await emit(conn, ev.IDENTITY_EVENTS, user_id, SOURCE, rules.SESSION_REVOKED, {
        "user_id": user_id, "session_id": session_id, "reason": reason, "at_ms": _now_ms()})


async def _current_user(conn: Connection, request: web.Request) -> Row:
    principal = authenticate(request)
    user = await store.get_user(conn, principal.user_id)
    if user is None:
        raise not_found("User", principal.user_id)
    if user["is_banned"]:
        raise _banned()
    return user


# ---------------------------------------------------------------- sign-up and sessions

@routes.post("/api/v1/auth/register")
async def register(request: web.Request) -> web.Response:
    body = await parse_body(request, RegisterRequest)
    try:
        rules.check_self_registration(body.role)
        phone = rules.normalize_phone(body.phone)
        rules.check_password_strength(body.password, body.email)
    except rules.RuleViolation as exc:
        raise _rule(exc) from None
    code = None
    if body.referral_code and body.referral_code.strip():
        code = rules.normalize_referral_code(body.referral_code)
        if code is None:
            raise validation_error("invalid referral code")
    password_hash = await _in_thread(hash_password, body.password)
    async with db.transaction() as conn:
        referrer_id = None
        if code is not None:
            referrer_id = await store.referral_code_owner(conn, code)
            if referrer_id is None:
                raise validation_error("invalid referral code")
        user = await store.create_user(
            conn, email=rules.normalize_email(body.email), password_hash=password_hash,
            full_name=body.full_name.strip(), role=body.role, phone=phone)
        if user is None:
            raise already_exists("User", "email", body.email)
        if referrer_id is not None:
            await store.create_referral(conn, referrer_id=referrer_id, referee_id=user["id"],
                                        code=code, reward_amount_cents=rules.REFERRAL_REWARD_CENTS)
        await emit(conn, ev.IDENTITY_EVENTS, user["id"], SOURCE, "identity.user_registered", {
            "user_id": user["id"], "email": user["email"], "full_name": user["full_name"],
            "role": user["role"], "referred_by": referrer_id,
        })
        return created((await start_session(conn, user))[0])


def _client_address(request: web.Request) -> str:
    """The client's address as the gateway resolved it (`X-Real-IP`, which the gateway always
    overwrites). Believed because workers are reachable only through the gateway (they bind
    127.0.0.1 by default, and only the gateway's port is published in docker/)."""
    return request.headers.get("X-Real-IP", "").strip()[:64] or request.remote or ""


async def _report_login_failure(account: str, address: str) -> None:
    """Publish the failure for the throttle agent (streams/login_throttle.py). Produced
    directly, like a GPS fix: it is a measurement, with no row to be atomic with. If Kafka
    does not take it the sign-in still fails (401); only the count misses it."""
    event = ev.new_event(SOURCE, "identity.login_failed", {"account": account,
                                                            "address": address})
    try:
        sent = await identity_events.send(key=account.encode(), value=event.to_json())
        await asyncio.wait_for(asyncio.shield(sent), PRODUCE_TIMEOUT_S)
    except (TimeoutError, KafkaError) as exc:
        log.warning("login failure not recorded by Kafka: %r", exc)


@routes.post("/api/v1/auth/login")
async def login(request: web.Request) -> web.Response:
    body = await parse_body(request, LoginRequest)
    account = rules.account_key(body.email)
    address = _client_address(request)
    counters = rules.login_counters(account, address)
    # Checked before the password: a locked sign-in costs no bcrypt and reveals nothing.
    wait = rules.retry_after(lock_ends(counters), time.time())
    if wait is not None:
        raise ApiError(429, rules.LOGIN_THROTTLED, f"try again in {wait} seconds",
                       headers={"Retry-After": str(wait)})
    async with db.connect() as conn:
        user = await store.get_user_credentials(conn, rules.normalize_email(body.email))
    valid = await _in_thread(verify_password, body.password,
                             user["password_hash"] if user else _DUMMY_HASH)
    if user is None or not valid:
        await _report_login_failure(account, address)
        raise unauthorized("invalid email or password")
    # Checked after the password, so the ban is only revealed to someone who knows it.
    if user["is_banned"]:
        raise _banned()
    async with db.transaction() as conn:
        return ok((await start_session(conn, user))[0])


@routes.post("/api/v1/auth/refresh")
async def refresh(request: web.Request) -> web.Response:
    body = await parse_body(request, RefreshRequest)
    try:
        claims = decode_token(body.refresh_token, "refresh")
    except InvalidToken:
        raise unauthorized("invalid refresh token") from None
    async with db.transaction() as conn:
        # Locked: of two concurrent rotations of one token, only the first succeeds.
        row = await store.find_refresh_token(conn, rules.token_hash(body.refresh_token),
                                             for_update=True)
        if row is None or row["user_id"] != claims.get("user_id", claims.get("sub")):
            raise unauthorized("refresh token not found")
        if not (row["revoked"] and row["replaced_by"] is not None):
            if row["revoked"] or row["expires_at"] <= datetime.now(UTC):
                raise unauthorized("refresh token is expired or revoked")
            user = await store.get_user(conn, row["user_id"])
            if user is None:
                raise unauthorized("refresh token not found")
            if user["is_banned"]:
                raise _banned()
            # Rotation keeps the session (tokens from before sessions existed start one here).
            session, new_jti = await start_session(conn, user,
                                                   row["session_id"] or claims.get("sid"))
            # Rotation: the presented token is spent (DESIGN item 5).
            await store.revoke_refresh_token(conn, row["id"], replaced_by=new_jti)
            return ok(session)
        # A rotated-away token came back: whoever holds it (thief or victim) must not keep the
        # session, so its whole family ends, newer tokens included (DESIGN item 13). Leaving
        # the block commits that; the refusal follows.
        if row["session_id"]:
            await end_session(conn, row["user_id"], row["session_id"],
                              rules.REASON_REFRESH_REUSE)
        else:  # a token from before sessions existed: its family is unknown
            await end_sessions(conn, row["user_id"], rules.REASON_REFRESH_REUSE)
    log.warning("refresh token reuse for user %s: session ended", row["user_id"])
    raise unauthorized("refresh token is expired or revoked")


@routes.post("/api/v1/auth/logout")
async def logout(request: web.Request) -> web.Response:
    principal = authenticate(request)
    async with db.transaction() as conn:
        # As in the contract, logout ends every session of the user (all refresh tokens), so
        # the access tokens of all of them end too, on every worker.
        await end_sessions(conn, principal.user_id, rules.REASON_LOGOUT,
                           session_id=principal.session_id)
    return message("logged out successfully")


# ---------------------------------------------------------------- profile

@routes.get("/api/v1/auth/profile")
async def get_profile(request: web.Request) -> web.Response:
    authenticate(request)
    async with db.connect() as conn:
        return ok(user_dto(await _current_user(conn, request)))


@routes.put("/api/v1/auth/profile")
async def update_profile(request: web.Request) -> web.Response:
    authenticate(request)
    body = await parse_body(request, UpdateProfileRequest)
    async with db.transaction() as conn:
        user = await _current_user(conn, request)
        try:
            changes = rules.profile_changes(user, rules.ProfileChange(
                full_name=body.full_name, phone=body.phone, avatar_url=body.avatar_url))
        except rules.RuleViolation as exc:
            raise _rule(exc) from None
        if not changes:
            return ok(user_dto(user))
        updated = await store.update_user(conn, user["id"], user["version"], **changes)
        if updated is None:
            raise conflict(rules.USER_CONFLICT)
        return ok(user_dto(updated))


# ---------------------------------------------------------------- password reset

@routes.post("/api/v1/auth/forgot-password")
async def forgot_password(request: web.Request) -> web.Response:
    """Always 202 with an empty body, whether or not the email is known (no enumeration)."""
    body = await parse_body(request, ForgotPasswordRequest)
    email = rules.normalize_email(body.email)
    token = None
    async with db.transaction() as conn:
        user = await store.get_user_by_email(conn, email) if rules.is_email(email) else None
        if user is not None and not user["is_banned"]:
            # Only the newest link works: issuing one spends every older one.
            await store.void_password_resets(conn, user["id"])
            token = rules.new_reset_token()
            expires_at = datetime.now(UTC) + rules.RESET_TOKEN_TTL
            await store.create_password_reset(conn, user_id=user["id"],
                                              token_hash=rules.token_hash(token),
                                              expires_at=expires_at)
            # Only a hint travels on Kafka: the token itself is a credential.
            await emit(conn, ev.IDENTITY_EVENTS, user["id"], SOURCE,
                       "identity.password_reset_requested", {
                           "user_id": user["id"], "email": user["email"],
                           "reset_token_hint": rules.reset_token_hint(token),
                           "expires_at": expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                       })
    if token is not None and not settings().production:
        log.info("password reset link for %s: %s?token=%s", email, RESET_URL, token)
    return web.Response(status=202)


@routes.post("/api/v1/auth/reset-password")
async def reset_password(request: web.Request) -> web.Response:
    body = await parse_body(request, ResetPasswordRequest)
    try:
        rules.check_password(body.new_password)
    except rules.RuleViolation as exc:
        raise _rule(exc) from None
    if not body.token.strip():
        raise validation_error("invalid token")
    password_hash = await _in_thread(hash_password, body.new_password)
    async with db.transaction() as conn:
        reset = await store.find_password_reset(conn, rules.token_hash(body.token.strip()))
        if reset is None:
            raise validation_error("invalid token")
        try:
            rules.check_reset(reset["used_at"], reset["expires_at"], datetime.now(UTC))
        except rules.RuleViolation as exc:
            raise _rule(exc) from None
        user = await store.get_user(conn, reset["user_id"], for_update=True)
        if user is None:
            raise validation_error("invalid token")
        try:  # length and common passwords were checked above; the email needs the account
            rules.check_password_strength(body.new_password, user["email"])
        except rules.RuleViolation as exc:
            raise _rule(exc) from None
        await store.update_user(conn, user["id"], user["version"], password_hash=password_hash)
        await store.mark_password_reset_used(conn, reset["id"])
        # No other link can change the password again.
        await store.void_password_resets(conn, user["id"])
        # Whoever held the old password loses their sessions too, access tokens included.
        await end_sessions(conn, user["id"], rules.REASON_PASSWORD_RESET)
        await emit(conn, ev.IDENTITY_EVENTS, user["id"], SOURCE, "identity.password_changed",
                   {"user_id": user["id"], "email": user["email"]})
    return message("password reset successful")


# ---------------------------------------------------------------- runner applications

@routes.post("/api/v1/runners/apply")
async def apply_as_runner(request: web.Request) -> web.Response:
    body = await parse_body(request, RunnerApplyRequest)
    application = rules.RunnerApplication(
        name=body.name.strip(), phone=body.phone.strip(), ic_number=body.ic_number.strip(),
        vehicle_type=body.vehicle_type.strip(), plate_number=body.plate_number.strip(),
        pet_experience=tuple(body.pet_experience or ()),
        comfortable_with_live_pets=body.comfortable_with_live_pets,
        consent_acknowledged=body.consent_acknowledged)
    try:
        rules.check_runner_application(application)
    except rules.RuleViolation as exc:
        raise _rule(exc) from None
    # Same answer whether or not the IC number was seen before (no enumeration): a repeat is
    # stored too, marked for an admin's review. Both paths do the same work, so timing does
    # not tell them apart either.
    year = datetime.now(UTC).year
    async with db.transaction() as conn:
        seen = await store.ic_number_submitted(conn, application.ic_number)
        row = None
        while row is None:  # a random number already taken (about 1 in 10^11): draw again
            number = rules.application_number(year)
            row = await store.insert_runner_application(
                conn, application_id=number, name=application.name, phone=application.phone,
                ic_number=application.ic_number, vehicle_type=application.vehicle_type,
                plate_number=application.plate_number,
                pet_experience=list(application.pet_experience),
                comfortable_with_live_pets=application.comfortable_with_live_pets,
                consent_acknowledged=True, status=rules.application_status(seen))
        await emit(conn, ev.IDENTITY_EVENTS, number, SOURCE,
                   "identity.runner_application_submitted", {
                       "application_id": number, "vehicle_type": application.vehicle_type,
                       "status": row["status"],
                   })
    return created({"applicationId": number})


# ---------------------------------------------------------------- referrals

@routes.get("/api/v1/referrals/code")
async def referral_code(request: web.Request) -> web.Response:
    principal = authenticate(request)
    async with db.transaction() as conn:
        return ok({"referral_code": await store.ensure_referral_code(conn, principal.user_id)})


@routes.get("/api/v1/referrals/me")
async def my_referrals(request: web.Request) -> web.Response:
    principal = authenticate(request)
    async with db.transaction() as conn:
        code = await store.ensure_referral_code(conn, principal.user_id)
        rows = await store.referrals_of(conn, principal.user_id)
    return ok({
        "referral_code": code, "total_referrals": len(rows),
        "referrals": [{
            "id": r["id"], "referee_id": r["referee_id"],
            "reward_amount_cents": r["reward_amount_cents"],
            "referrer_credited": r["referrer_credited"],
            "referee_credited": r["referee_credited"], "created_at": r["created_at"],
        } for r in rows],
    })


# ---------------------------------------------------------------- administration

@routes.get("/api/v1/admin/users")
async def admin_list_users(request: web.Request) -> web.Response:
    require_role(request, "admin")
    page, limit = page_params(request, default_limit=20, max_limit=100, over_max=20)
    async with db.connect() as conn:
        rows, total = await store.list_users(conn, limit=limit, offset=(page - 1) * limit)
    return paginated([user_dto(r) for r in rows], total, page, limit)


@routes.get("/api/v1/admin/users/{id}")
async def admin_get_user(request: web.Request) -> web.Response:
    require_role(request, "admin")
    user_id = path_uuid(request, "id", "invalid user ID")
    async with db.connect() as conn:
        user = await store.get_user(conn, user_id)
    if user is None:
        raise not_found("User", user_id)
    return ok(user_dto(user))


@routes.post("/api/v1/admin/users/{id}/ban")
async def admin_ban_user(request: web.Request) -> web.Response:
    admin = require_role(request, "admin")
    user_id = path_uuid(request, "id", "invalid user ID")
    if user_id == admin.user_id:
        raise validation_error("you cannot ban yourself")
    async with db.transaction() as conn:
        user = await store.get_user(conn, user_id, for_update=True)
        if user is None:
            raise not_found("User", user_id)
        if not user["is_banned"]:
            updated = await store.update_user(conn, user_id, user["version"], is_banned=True,
                                              is_verified=False, banned_at=datetime.now(UTC))
            if updated is None:
                raise conflict(rules.USER_CONFLICT)
        # Even for an already-banned user (e.g. banned before bans were published): a ban
        # always leaves no live session or token behind, on every worker.
        await store.revoke_user_refresh_tokens(conn, user_id)
        await emit(conn, ev.IDENTITY_EVENTS, user_id, SOURCE, rules.USER_BANNED,
                   {"user_id": user_id, "banned_by": admin.user_id, "at_ms": _now_ms()})
    return message("user banned successfully")


@routes.post("/api/v1/admin/users/{id}/unban")
async def admin_unban_user(request: web.Request) -> web.Response:
    """Lift a ban: the user can sign in again; tokens from before the ban stay void."""
    admin = require_role(request, "admin")
    user_id = path_uuid(request, "id", "invalid user ID")
    async with db.transaction() as conn:
        user = await store.get_user(conn, user_id, for_update=True)
        if user is None:
            raise not_found("User", user_id)
        if user["is_banned"]:
            updated = await store.update_user(conn, user_id, user["version"], is_banned=False,
                                              banned_at=None)
            if updated is None:
                raise conflict(rules.USER_CONFLICT)
            await emit(conn, ev.IDENTITY_EVENTS, user_id, SOURCE, rules.USER_UNBANNED,
                       {"user_id": user_id, "unbanned_by": admin.user_id, "at_ms": _now_ms()})
    return message("user unbanned successfully")


@routes.get("/api/v1/admin/stats/users")
async def admin_user_stats(request: web.Request) -> web.Response:
    require_role(request, "admin")
    async with db.connect() as conn:
        counts = await store.count_users_by_role(conn)
    by_role = {role: counts.get(role, 0) for role in rules.ROLES}
    return ok({"total_users": sum(counts.values()), "by_role": by_role})

