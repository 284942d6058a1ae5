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


def hash_password(password: str) -> str:
    return _passwords.hash(password)


def verify_password(password: str, hashed: str) -> bool:
    try:
        return _passwords.verify(password, hashed)
    except ValueError:
        return False


def _issue(user_id: str, email: str, role: str, token_type: str, ttl_s: int) -> tuple[str, str, int]:
    cfg = settings()
    now = int(time.time())
    jti = str(uuid.uuid4())
    exp = now + ttl_s
    claims = {
        "jti": jti, "sub": user_id, "iat": now, "exp": exp, "iss": cfg.jwt_issuer,
        "user_id": user_id, "email": email, "role": role, "token_type": token_type,
    }
    return jwt.encode(claims, cfg.jwt_secret, algorithm="HS256"), jti, exp


def issue_access_token(user_id: str, email: str, role: str) -> str:
    return _issue(user_id, email, role, "access", settings().jwt_access_ttl_s)[0]


def issue_refresh_token(user_id: str) -> tuple[str, str, int]:
    """A refresh JWT; returns (token, jti, exp epoch seconds)."""
    return _issue(user_id, "", "", "refresh", settings().jwt_refresh_ttl_s)


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
    return Principal(str(user_id), claims.get("email", ""), claims.get("role", ""), claims.get("jti", ""))
