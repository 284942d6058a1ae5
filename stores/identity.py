"""Identity queries shared by the identity views, agents and command, and by other domains
(e.g. `get_user` / `get_users` to find a user's name, email or phone).

Password hashes never leave this module except through `get_user_credentials`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from core.db import Connection, Row
from domain.identity import new_referral_code
from models.identity import (
    password_resets,
    referrals,
    refresh_tokens,
    runner_applications,
    user_referral_codes,
    users,
)

_PUBLIC_USER_COLS = [c for c in users.c if c.name != "password_hash"]


async def _scalar_str(conn: Connection, stmt: Any) -> str | None:
    value = await conn.scalar(stmt)
    return None if value is None else str(value)


# ---------------------------------------------------------------- users

async def get_user(conn: Connection, user_id: str, *, for_update: bool = False) -> Row | None:
    """The user row without its password hash, or None."""
    stmt = select(*_PUBLIC_USER_COLS).where(users.c.id == user_id)
    if for_update:
        stmt = stmt.with_for_update()
    return await conn.fetch_one(stmt)


async def get_users(conn: Connection, user_ids: Iterable[str]) -> dict[str, Row]:
    """Users by id (ids that do not exist are absent)."""
    ids = list({str(i) for i in user_ids})
    if not ids:
        return {}
    rows = await conn.fetch_all(select(*_PUBLIC_USER_COLS).where(users.c.id.in_(ids)))
    return {r["id"]: r for r in rows}


async def get_user_credentials(conn: Connection, email: str) -> Row | None:
    """The user row including `password_hash`, by (already normalised) email."""
    return await conn.fetch_one(select(users).where(func.lower(users.c.email) == email))


async def get_user_by_email(conn: Connection, email: str) -> Row | None:
    return await conn.fetch_one(select(*_PUBLIC_USER_COLS).where(func.lower(users.c.email) == email))


async def create_user(conn: Connection, *, email: str, password_hash: str, full_name: str,
                      role: str, phone: str = "", is_verified: bool = False) -> Row | None:
    """Insert a user; None when the email is already taken (whatever its case)."""
    stmt = (
        pg_insert(users)
        .values(email=email, password_hash=password_hash, full_name=full_name, role=role,
                phone=phone, is_verified=is_verified)
        .on_conflict_do_nothing()
        .returning(*_PUBLIC_USER_COLS)
    )
    return await conn.fetch_one(stmt)


async def update_user(conn: Connection, user_id: str, expected_version: int,
                      **values: Any) -> Row | None:
    """Optimistic update: applies `values` and bumps the version only if the row is still at
    `expected_version`; None when another writer got there first."""
    stmt = (
        update(users)
        .where(users.c.id == user_id, users.c.version == expected_version)
        .values(**values, version=users.c.version + 1, updated_at=func.now())
        .returning(*_PUBLIC_USER_COLS)
    )
    return await conn.fetch_one(stmt)


async def list_users(conn: Connection, *, limit: int, offset: int) -> tuple[list[Row], int]:
    total = await conn.scalar(select(func.count()).select_from(users))
    stmt = (select(*_PUBLIC_USER_COLS)
            .order_by(users.c.created_at.desc(), users.c.id.desc())
            .limit(limit).offset(offset))
    rows = await conn.fetch_all(stmt)
    return rows, int(total or 0)


async def count_users_by_role(conn: Connection) -> dict[str, int]:
    rows = await conn.fetch_all(select(users.c.role, func.count().label("n")).group_by(users.c.role))
    return {r["role"]: int(r["n"]) for r in rows}


# ---------------------------------------------------------------- refresh tokens

async def store_refresh_token(conn: Connection, *, user_id: str, jti: str, token_hash: str,
                              expires_at: datetime, session_id: str) -> None:
    await conn.execute(refresh_tokens.insert().values(
        user_id=user_id, jti=jti, token_hash=token_hash, expires_at=expires_at,
        session_id=session_id))


async def find_refresh_token(conn: Connection, token_hash: str, *,
                             for_update: bool = False) -> Row | None:
    stmt = select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash)
    if for_update:
        stmt = stmt.with_for_update()
    return await conn.fetch_one(stmt)


async def revoke_refresh_token(conn: Connection, token_id: str, *,
                               replaced_by: str | None = None) -> None:
    await conn.execute(
        update(refresh_tokens).where(refresh_tokens.c.id == token_id)
        .values(revoked=True, revoked_at=func.now(), replaced_by=replaced_by))


async def revoke_session_refresh_tokens(conn: Connection, session_id: str) -> int:
    """Revoke every live refresh token of one session (the whole rotation family, newer
    tokens included); returns how many."""
    return await conn.execute(
        update(refresh_tokens)
        .where(refresh_tokens.c.session_id == session_id, refresh_tokens.c.revoked.is_(False))
        .values(revoked=True, revoked_at=func.now()))


async def revoke_user_refresh_tokens(conn: Connection, user_id: str) -> int:
    """Revoke every live refresh token of the user; returns how many."""
    return await conn.execute(
        update(refresh_tokens)
        .where(refresh_tokens.c.user_id == user_id, refresh_tokens.c.revoked.is_(False))
        .values(revoked=True, revoked_at=func.now()))


# ---------------------------------------------------------------- password resets

async def create_password_reset(conn: Connection, *, user_id: str, token_hash: str,
                                 expires_at: datetime) -> None:
    await conn.execute(password_resets.insert().values(
        user_id=user_id, token_hash=token_hash, expires_at=expires_at))


async def void_password_resets(conn: Connection, user_id: str) -> int:
    """Spend every unused reset link of the user (a newer link, or a completed reset, makes
    the older ones worthless); returns how many."""
    return await conn.execute(
        update(password_resets)
        .where(password_resets.c.user_id == user_id, password_resets.c.used_at.is_(None))
        .values(used_at=func.now()))


async def find_password_reset(conn: Connection, token_hash: str) -> Row | None:
    """The reset row, locked, so two concurrent uses cannot both succeed."""
    stmt = (select(password_resets).where(password_resets.c.token_hash == token_hash)
            .with_for_update())
    return await conn.fetch_one(stmt)


async def mark_password_reset_used(conn: Connection, reset_id: str) -> None:
    await conn.execute(update(password_resets).where(password_resets.c.id == reset_id)
                       .values(used_at=func.now()))


# ---------------------------------------------------------------- runner applications

async def ic_number_submitted(conn: Connection, ic_number: str) -> bool:
    """Whether an application with this IC number exists (for the admin's review status only,
    never for the applicant's answer)."""
    stmt = select(literal(1)).select_from(runner_applications).where(
        runner_applications.c.ic_number == ic_number).limit(1)
    return bool(await conn.scalar(stmt))


async def insert_runner_application(conn: Connection, **values: Any) -> Row | None:
    """Insert an application; None when its (random) application number is already taken."""
    stmt = (pg_insert(runner_applications).values(**values)
            .on_conflict_do_nothing(index_elements=["application_id"])
            .returning(runner_applications))
    return await conn.fetch_one(stmt)


# ---------------------------------------------------------------- referrals

async def referral_code_of(conn: Connection, user_id: str) -> str | None:
    return await conn.scalar(
        select(user_referral_codes.c.code).where(user_referral_codes.c.user_id == user_id))


async def ensure_referral_code(conn: Connection, user_id: str) -> str:
    """The user's referral code, created on first use (safe against concurrent callers)."""
    while True:
        code = await referral_code_of(conn, user_id)
        if code:
            return code
        # No conflict target: a taken user_id (a concurrent caller) and a taken code (a random
        # collision) both leave the row out; the loop then reads the winner or draws again.
        await conn.execute(
            pg_insert(user_referral_codes)
            .values(user_id=user_id, code=new_referral_code())
            .on_conflict_do_nothing())


async def referral_code_owner(conn: Connection, code: str) -> str | None:
    stmt = select(user_referral_codes.c.user_id).where(user_referral_codes.c.code == code)
    return await _scalar_str(conn, stmt)


async def create_referral(conn: Connection, *, referrer_id: str, referee_id: str, code: str,
                          reward_amount_cents: int) -> Row | None:
    stmt = (pg_insert(referrals)
            .values(referrer_id=referrer_id, referee_id=referee_id, referral_code=code,
                    reward_amount_cents=reward_amount_cents)
            .on_conflict_do_nothing(index_elements=["referee_id"])
            .returning(referrals))
    return await conn.fetch_one(stmt)


async def referrals_of(conn: Connection, referrer_id: str) -> list[Row]:
    stmt = (select(referrals).where(referrals.c.referrer_id == referrer_id)
            .order_by(referrals.c.created_at.desc(), referrals.c.id))
    return await conn.fetch_all(stmt)


async def referral_of_referee(conn: Connection, referee_id: str, *,
                              for_update: bool = False) -> Row | None:
    stmt = select(referrals).where(referrals.c.referee_id == referee_id)
    if for_update:
        stmt = stmt.with_for_update()
    return await conn.fetch_one(stmt)


async def credit_referral(conn: Connection, referral_id: str, booking_id: str) -> Row | None:
    """Mark both sides credited; None if it already was (so the credit happens once)."""
    stmt = (update(referrals)
            .where(referrals.c.id == referral_id, referrals.c.referrer_credited.is_(False))
            .values(referrer_credited=True, referee_credited=True, credited_at=func.now(),
                    credited_booking_id=booking_id)
            .returning(referrals))
    return await conn.fetch_one(stmt)
