"""JWT access/refresh tokens (PyJWT, HS256) and password hashing (passlib bcrypt)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt
from passlib.context import CryptContext

from core.config import settings

ROLES = ("owner", "runner", "admin", "shop")
_passwords = CryptContext(schemes=["bcrypt"], deprecated="auto", bcrypt__rounds=10)


class InvalidToken(Exception):
    """The token is malformed, expired, of the wrong type or badly signed."""


@dataclass(frozen=True)
class Principal:
    """The authenticated caller, taken from an access token."""

    user_id: str
    email: str
    role: str
    token_id: str = ""
    # The session (refresh-token family) the token belongs to; "" for tokens issued before
    # sessions existed. Revocation (tables/sessions.py) is checked by session and issue time.
    session_id: str = ""
    # When the token was issued, in epoch milliseconds (sub-second, unlike `iat`): a session
    # opened just after a password reset in the same second must not be void.
    issued_at_ms: int = 0


def hash_password(password: str) -> str:
    return _passwords.hash(password)


def verify_password(password: str, hashed: str) -> bool:
    try:
        return _passwords.verify(password, hashed)
    except ValueError:
        return False


def new_session_id() -> str:
    """A fresh session id: one per login, kept by every token rotated from it."""
    return str(uuid.uuid4())


def _issue(user_id: str, email: str, role: str, token_type: str, ttl_s: int,
           session_id: str) -> tuple[str, str, int]:
    cfg = settings()
    now_ms = int(time.time() * 1000)
    now = now_ms // 1000
    jti = str(uuid.uuid4())
    exp = now + ttl_s
    claims = {
        "jti": jti, "sub": user_id, "iat": now, "exp": exp, "iss": cfg.jwt_issuer,
        "user_id": user_id, "email": email, "role": role, "token_type": token_type,
        "sid": session_id, "iat_ms": now_ms,
    }
    return jwt.encode(claims, cfg.jwt_secret, algorithm="HS256"), jti, exp


def issue_access_token(user_id: str, email: str, role: str, session_id: str | None = None) -> str:
    """An access JWT of session `session_id` (a new session when None)."""
    return _issue(user_id, email, role, "access", settings().jwt_access_ttl_s,
                  session_id or new_session_id())[0]


def issue_refresh_token(user_id: str, session_id: str) -> tuple[str, str, int]:
    """A refresh JWT of session `session_id`; returns (token, jti, exp epoch seconds)."""
    return _issue(user_id, "", "", "refresh", settings().jwt_refresh_ttl_s, session_id)


def issued_at_ms(claims: dict) -> int:
    """The issue time of decoded claims in epoch milliseconds (from `iat` for older tokens)."""
    value = claims.get("iat_ms")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(claims.get("iat", 0)) * 1000


def decode_token(token: str, token_type: str = "access") -> dict:
    cfg = settings()
    try:
        claims = jwt.decode(
            token, cfg.jwt_secret, algorithms=["HS256"], issuer=cfg.jwt_issuer,
            options={"require": ["exp", "iat", "sub"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from exc
    if claims.get("token_type") != token_type:
        raise InvalidToken("wrong token type")
    return claims


def principal_from_token(token: str) -> Principal:
    claims = decode_token(token, "access")
    user_id = claims.get("user_id") or claims.get("sub")
    try:
        uuid.UUID(str(user_id))
    except ValueError as exc:
        raise InvalidToken("bad subject") from exc
    return Principal(str(user_id), claims.get("email", ""), claims.get("role", ""),
                     claims.get("jti", ""), str(claims.get("sid") or ""), issued_at_ms(claims))
