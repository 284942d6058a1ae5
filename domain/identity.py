"""Pure rules of the identity domain: accounts, tokens, referrals, runner applications.

No I/O here: views and agents call these to decide, then persist and emit.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from urllib.parse import urlsplit

import phonenumbers
from zxcvbn.frequency_lists import FREQUENCY_LISTS

ROLES = ("owner", "runner", "admin", "shop")
# DESIGN item 5: admins are made by the `kilat create-admin` command, never by sign-up.
SELF_REGISTRABLE_ROLES = ("owner", "runner", "shop")

MIN_PASSWORD_LENGTH = 8
# bcrypt only reads the first 72 bytes: longer passwords are refused rather than silently cut.
MAX_PASSWORD_BYTES = 72
MAX_NAME_LENGTH = 255
PHONE_RE = re.compile(r"^\+?[0-9]{7,15}$")
# Deliberately simple: one @, no spaces, a dot in the domain. Deliverability is the mail
# server's business; this only rejects what is obviously not an address.
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")

REFERRAL_REWARD_CENTS = 500
REFERRAL_CODE_RE = re.compile(r"^REF-[0-9a-f]{8}$")

RESET_TOKEN_TTL = timedelta(hours=1)

VEHICLE_TYPES = ("motorbike", "car", "bicycle")
PET_EXPERIENCE = ("dogs", "cats", "birds", "fish", "small_pets", "vet_trips")
APPLICATION_STATUS = "pending_review"
# An application whose IC number was already submitted: stored and answered like any other
# (the form must not reveal which IC numbers are registered), for an admin to look at.
DUPLICATE_APPLICATION_STATUS = "duplicate_review"
# Application numbers: random, readable aloud and typed without confusion (no 0/O, 1/I/L).
APPLICATION_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
APPLICATION_CODE_LENGTH = 8

USER_CONFLICT = "user was modified by another transaction"
BANNED = "account is banned"


class RuleViolation(ValueError):
    """Input that breaks a domain rule (answered with 400 and the message)."""


# ---------------------------------------------------------------- accounts

def normalize_email(email: str) -> str:
    """Emails are case-insensitive: one canonical lower-case form is stored and looked up."""
    return email.strip().lower()


def is_email(value: str) -> bool:
    return bool(EMAIL_RE.match(value.strip())) and len(value.strip()) <= 255


def normalize_phone(phone: str | None) -> str:
    """The trimmed phone, "" when absent; RuleViolation when it is not 7-15 digits."""
    value = (phone or "").strip()
    if value and not PHONE_RE.match(value):
        raise RuleViolation(f"invalid phone format: {value}")
    return value


def check_self_registration(role: str) -> None:
    if role == "admin":
        raise RuleViolation("admin accounts cannot be self-registered")
    if role not in SELF_REGISTRABLE_ROLES:
        raise RuleViolation(f"invalid role: {role}")


PASSWORD_TOO_COMMON = "password is too common"
PASSWORD_IS_EMAIL = "password must not be the same as the email"


@cache
def common_passwords() -> frozenset[str]:
    """The 30,000 most common passwords of the zxcvbn package (MIT licence; the list zxcvbn
    was built from leaked-password corpora), lower-case."""
    return frozenset(FREQUENCY_LISTS["passwords"])


def check_password(password: str, email: str | None = None) -> None:
    """Length (8 characters to 72 bytes), not a common password (case-insensitive), and, when
    the account's email is known, neither the email nor its local part."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise RuleViolation(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise RuleViolation(f"password must be at most {MAX_PASSWORD_BYTES} bytes")
    check_password_strength(password, email)


def check_password_strength(password: str, email: str | None = None) -> None:
    """The rules beyond length: RuleViolation for a common password or one equal to the
    email (or to the part before its @), compared case-insensitively."""
    folded = password.strip().casefold()
    if email:
        address = normalize_email(email)
        if folded in (address, address.partition("@")[0]):
            raise RuleViolation(PASSWORD_IS_EMAIL)
    if folded in common_passwords():
        raise RuleViolation(PASSWORD_TOO_COMMON)


def check_full_name(name: str) -> str:
    value = name.strip()
    if len(value) > MAX_NAME_LENGTH:
        raise RuleViolation(f"full_name must be at most {MAX_NAME_LENGTH} characters")
    return value


@dataclass(frozen=True)
class ProfileChange:
    full_name: str | None = None
    phone: str | None = None
    avatar_url: str | None = None


MAX_AVATAR_URL_LENGTH = 2048
# Kilat operates in Malaysia: a number written without a country code ("012-345 6789") is read
# as Malaysian, then stored in E.164 ("+60123456789").
DEFAULT_PHONE_REGION = "MY"


def e164_phone(raw: str) -> str:
    """The phone in E.164 form; RuleViolation unless it is a possible number. Spaces, dashes,
    dots and brackets are accepted as separators (people type them)."""
    try:
        number = phonenumbers.parse(raw, DEFAULT_PHONE_REGION)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or number.extension or not phonenumbers.is_possible_number(number):
        raise RuleViolation("phone must be a phone number in E.164 form, e.g. +60123456789")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def check_avatar_url(raw: str) -> str:
    """An absolute http(s) URL: anything else (`javascript:`, `data:`, relative paths) would be
    rendered by clients as a link or an image source."""
    value = raw.strip()
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if (parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname
            or len(value) > MAX_AVATAR_URL_LENGTH
            or any(ch.isspace() or ord(ch) < 32 for ch in value)):
        raise RuleViolation("avatar_url must be an http or https URL")
    return value


def profile_changes(current: dict, change: ProfileChange) -> dict[str, str]:
    """The columns to update: empty strings mean "unchanged" (the contract's rule)."""
    updates: dict[str, str] = {}
    if change.full_name and change.full_name.strip():
        updates["full_name"] = check_full_name(change.full_name)
    if change.phone and change.phone.strip():
        updates["phone"] = e164_phone(change.phone)
    if change.avatar_url and change.avatar_url.strip():
        updates["avatar_url"] = check_avatar_url(change.avatar_url)
    return {k: v for k, v in updates.items() if current.get(k) != v}


# ---------------------------------------------------------------- sign-in throttle
#
# Failed sign-ins are counted per tumbling window under three counters (the agent in
# streams/login_throttle.py); a counter at its limit locks sign-in for what it names until the
# window ends:
# * the account at one address (limit `login_max_failures`, 5): someone guessing one account's
#   password; keyed by address too, so a stranger's failures never lock the owner's own address;
# * the address, whatever the account (`login_max_failures_per_address`, 20): one machine trying
#   many accounts; higher, because many people share an address behind a NAT;
# * the account, whatever the address (`login_max_failures_per_account`, 50): guessing spread
#   over many addresses. A stranger with 10+ addresses can lock an owner out with it, but only
#   until the window ends (the trade-off for bounding distributed guessing).

LOGIN_THROTTLED = "too many failed login attempts"
COUNTER_ACCOUNT_AT_ADDRESS = "aa"
COUNTER_ADDRESS = "ad"
COUNTER_ACCOUNT = "ac"


def account_key(email: str) -> str:
    """What the throttle knows of an account: a hash of the normalised email (unknown emails
    are throttled alike, so the throttle does not reveal which accounts exist, and the events
    carry no address book of attempted emails)."""
    return hashlib.sha256(normalize_email(email).encode()).hexdigest()[:32]


def login_counters(account: str, address: str) -> tuple[str, str, str]:
    """The counter keys one failure of `account` from `address` adds to."""
    return (f"{COUNTER_ACCOUNT_AT_ADDRESS}:{account}@{address}", f"{COUNTER_ADDRESS}:{address}",
            f"{COUNTER_ACCOUNT}:{account}")


@dataclass(frozen=True)
class ThrottleLimits:
    account_at_address: int
    address: int
    account: int

    def limit_of(self, counter: str) -> int:
        kind = counter.partition(":")[0]
        return {COUNTER_ACCOUNT_AT_ADDRESS: self.account_at_address,
                COUNTER_ADDRESS: self.address, COUNTER_ACCOUNT: self.account}.get(kind, 0)


def locks_after(counter: str, failures: int, limits: ThrottleLimits) -> bool:
    """Whether `failures` in the current window lock what `counter` names (0 = no limit)."""
    limit = limits.limit_of(counter)
    return limit > 0 and failures >= limit


def retry_after(lock_ends: Iterable[float | None], now: float) -> int | None:
    """Whole seconds until the last of the active locks ends, or None when none is active."""
    remaining = [end - now for end in lock_ends if end is not None and end > now]
    return max(1, math.ceil(max(remaining))) if remaining else None


# ---------------------------------------------------------------- secrets

def token_hash(token: str) -> str:
    """How refresh and reset tokens are stored: SHA-256 hex (the tokens are high-entropy, so a
    fast hash is enough, and it allows an indexed lookup)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_reset_token() -> str:
    """64 hex chars (32 random bytes)."""
    return secrets.token_hex(32)


def reset_token_hint(token: str) -> str:
    """The last 4 characters: enough for support to match a user's email to a request,
    far too little to use the token."""
    return token[-4:]


def check_reset(used_at: datetime | None, expires_at: datetime, now: datetime) -> None:
    if used_at is not None:
        raise RuleViolation("token already used")
    if expires_at <= now:
        raise RuleViolation("token expired")


# ---------------------------------------------------------------- referrals

def new_referral_code() -> str:
    """`REF-` + 8 lowercase hex (4 random bytes)."""
    return "REF-" + secrets.token_hex(4)


def normalize_referral_code(code: str) -> str | None:
    """The canonical form of a code typed by a user, or None if it cannot be one."""
    value = code.strip()
    if len(value) != 12 or value[:4].upper() != "REF-":
        return None
    value = "REF-" + value[4:].lower()
    return value if REFERRAL_CODE_RE.match(value) else None


# ---------------------------------------------------------------- runner applications

@dataclass(frozen=True)
class RunnerApplication:
    name: str
    phone: str
    ic_number: str
    vehicle_type: str
    plate_number: str
    pet_experience: tuple[str, ...]
    comfortable_with_live_pets: bool
    consent_acknowledged: bool


def check_runner_application(app: RunnerApplication) -> None:
    """The first failing rule, in the order clients have always seen them."""
    if not app.name.strip():
        raise RuleViolation("name is required")
    if not app.phone.strip():
        raise RuleViolation("phone is required")
    if not app.ic_number.strip():
        raise RuleViolation("icNumber is required")
    if app.vehicle_type not in VEHICLE_TYPES:
        raise RuleViolation("vehicleType must be one of: " + ", ".join(VEHICLE_TYPES))
    if not app.plate_number.strip():
        raise RuleViolation("plateNumber is required")
    if not all_in(app.pet_experience, PET_EXPERIENCE):
        raise RuleViolation("petExperience entries must be one of: " + ", ".join(PET_EXPERIENCE))
    if not app.consent_acknowledged:
        raise RuleViolation("consent must be acknowledged")


def all_in(values: Iterable[str], allowed: Iterable[str]) -> bool:
    allowed_set = set(allowed)
    return all(v in allowed_set for v in values)


def application_number(year: int) -> str:
    """`KR-<year>-<8 random characters>` (e.g. KR-2026-7QK2M9XD): ~2^39 possibilities a year,
    so numbers reveal neither how many people applied nor each other."""
    code = "".join(secrets.choice(APPLICATION_ALPHABET) for _ in range(APPLICATION_CODE_LENGTH))
    return f"KR-{year}-{code}"


def application_status(ic_already_submitted: bool) -> str:
    return DUPLICATE_APPLICATION_STATUS if ic_already_submitted else APPLICATION_STATUS


# ---------------------------------------------------------------- sessions and revocation
#
# A session is one login: every token rotated from it carries its id (`sid`). Ending sessions
# is an event on identity.events; each worker keeps, per user, a revocation record built from
# those events (tables/sessions.py) and refuses tokens it voids:
#   {"banned": bool, "void_before_ms": int, "sessions": {session id: remember until (ms)}}

SESSION_REVOKED = "identity.session_revoked"      # one session: {user_id, session_id, reason, at_ms}
SESSIONS_REVOKED = "identity.sessions_revoked"    # all sessions: {user_id, reason, before_ms}
USER_BANNED = "identity.user_banned"              # {user_id, banned_by, at_ms}
USER_UNBANNED = "identity.user_unbanned"          # {user_id, unbanned_by, at_ms}
REVOCATION_EVENTS = (SESSION_REVOKED, SESSIONS_REVOKED, USER_BANNED, USER_UNBANNED)

# Why sessions end (the `reason` of the events).
REASON_LOGOUT = "logout"
REASON_PASSWORD_RESET = "password_reset"
REASON_REFRESH_REUSE = "refresh_token_reuse"


def apply_revocation(record: dict | None, type_: str, data: dict, at_ms: int, *,
                     keep_ms: int, now_ms: int) -> dict:
    """The user's revocation record after one event. Idempotent and order-tolerant for
    revocations (a replayed event changes nothing). A revoked session is remembered for
    `keep_ms` after its revocation (the longest an access token of it can live, plus a
    margin): by then every token of it has expired, and its refresh tokens are revoked in
    the database, so the entry can go."""
    rec = {"banned": False, "void_before_ms": 0, "sessions": {}, **(record or {})}
    sessions = {sid: until for sid, until in dict(rec["sessions"]).items() if until > now_ms}
    if type_ == SESSION_REVOKED:
        sid = str(data["session_id"])
        sessions[sid] = max(sessions.get(sid, 0), at_ms + keep_ms)
    elif type_ == SESSIONS_REVOKED:
        rec["void_before_ms"] = max(int(rec["void_before_ms"]), at_ms)
    elif type_ == USER_BANNED:
        rec["banned"] = True
        rec["void_before_ms"] = max(int(rec["void_before_ms"]), at_ms)
    elif type_ == USER_UNBANNED:
        # Tokens from before the ban stay void; new logins work again.
        rec["banned"] = False
    rec["sessions"] = sessions
    return rec


def token_revoked(record: dict | None, session_id: str, issued_at_ms: int) -> bool:
    """Whether a token of `session_id`, issued at `issued_at_ms`, is void by `record`."""
    if not record:
        return False
    if record.get("banned"):
        return True
    if issued_at_ms < int(record.get("void_before_ms") or 0):
        return True
    return bool(session_id) and session_id in (record.get("sessions") or {})
