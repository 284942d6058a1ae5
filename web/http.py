"""Shared HTTP helpers: the response envelope, errors, auth, body validation, pagination.

Wire contract (reference §1.1): success `{"success":true,"data":...}`; domain errors
`{"success":false,"error":msg,"detail":detail}`; bad requests `{"success":false,"error":msg}`;
middleware auth errors `{"error":msg}` with no `success` key.
"""

from __future__ import annotations

import functools
import json
import math
import re
import types
import typing
import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, TypeVar

import pydantic
from aiohttp import web

from core.security import InvalidToken, Principal, principal_from_token
from domain.payment import InvalidTransition
from services import errors as service
from tables.sessions import is_revoked

M = TypeVar("M", bound=pydantic.BaseModel)


# ---------------------------------------------------------------- JSON encoding

def format_time(value: datetime) -> str:
    """Go's RFC3339Nano in UTC: fractional seconds without trailing zeros, `Z` suffix."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(value: Any) -> str:
    return json.dumps(value, default=_default, separators=(",", ":"))


def json_response(body: Any, status: int = 200, **kw: Any) -> web.Response:
    return web.json_response(body, status=status, dumps=dumps, **kw)


def ok(data: Any, status: int = 200) -> web.Response:
    return json_response({"success": True, "data": data}, status)


def created(data: Any) -> web.Response:
    return ok(data, 201)


def message(text: str, status: int = 200) -> web.Response:
    """The contract's `{"success":true,"data":{"message":...}}` acknowledgement."""
    return ok({"message": text}, status)


def paginated(items: list[Any], total: int, page: int, limit: int) -> web.Response:
    pages = math.ceil(total / limit) if limit else 0
    return json_response({
        "success": True, "data": list(items),
        "pagination": {"total": total, "page": page, "limit": limit, "total_pages": pages},
    })


# ---------------------------------------------------------------- errors

class ApiError(Exception):
    """An error with its HTTP status and contract body.

    `detail=None` omits the key (bad-request style); `enveloped=False` drops `success`
    (middleware style)."""

    def __init__(self, status: int, error: str, detail: str | None = None, *,
                 enveloped: bool = True, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.detail = detail
        self.enveloped = enveloped
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"success": False} if self.enveloped else {}
        body["error"] = self.error
        if self.detail is not None:
            body["detail"] = self.detail
        return body

    def response(self) -> web.Response:
        return json_response(self.body(), self.status, headers=self.headers)


# A use case's refusal (services/errors.py) → the contract's status; the message and detail
# are the use case's own.
_STATUS_OF: tuple[tuple[type[service.ServiceError], int], ...] = (
    (service.NotFound, 404), (service.Forbidden, 403), (service.Conflict, 409),
    (service.Invalid, 400), (service.Unprocessable, 422), (service.PaymentDeclined, 402),
    (service.ProviderUnavailable, 502),
)


def api_error_for(exc: service.ServiceError | InvalidTransition) -> ApiError:
    """The HTTP answer to a refusal of a use case."""
    if isinstance(exc, InvalidTransition):
        return invalid_transition(exc.current, exc.target)
    status = next((code for kind, code in _STATUS_OF if isinstance(exc, kind)), 400)
    return ApiError(status, exc.message, exc.detail)


@web.middleware
async def domain_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Views call use cases and let their refusals through: this maps them (innermost, so the
    Idempotency-Key layer stores the mapped answer)."""
    try:
        return await handler(request)
    except (service.ServiceError, InvalidTransition) as exc:
        raise api_error_for(exc) from None


def bad_request(msg: str) -> ApiError:
    """400 for malformed input (no `detail` key), e.g. `invalid booking ID`."""
    return ApiError(400, msg)


def validation_error(msg: str) -> ApiError:
    """400 for a domain validation failure (`detail` present, empty)."""
    return ApiError(400, msg, "")


def not_found(entity: str, ident: Any) -> ApiError:
    return ApiError(404, f"{entity} not found", f"{entity} with id '{ident}' was not found")


def conflict(msg: str) -> ApiError:
    return ApiError(409, msg, "")


def already_exists(entity: str, field: str, value: Any) -> ApiError:
    return ApiError(409, f"{entity} with {field} '{value}' already exists", "")


def invalid_transition(current: str, target: str) -> ApiError:
    return ApiError(422, f"cannot transition from '{current}' to '{target}'", "")


def forbidden(msg: str = "forbidden") -> ApiError:
    return ApiError(403, msg, "")


def unauthorized(msg: str = "unauthorized") -> ApiError:
    return ApiError(401, msg, "")


# ---------------------------------------------------------------- auth

def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if not header:
        raise ApiError(401, "authorization header is required", enveloped=False)
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "authorization header must be Bearer {token}", enveloped=False)
    return token.strip()


def principal_of(token: str) -> Principal:
    """The identity an access token proves, unless it is invalid, expired or revoked (its
    session ended, its user's sessions were all ended, or its user is banned): 401 then."""
    try:
        principal = principal_from_token(token)
    except InvalidToken:
        raise ApiError(401, "invalid or expired token", enveloped=False) from None
    if is_revoked(principal):
        raise ApiError(401, "invalid or expired token", enveloped=False)
    return principal


def authenticate(request: web.Request) -> Principal:
    """The caller's identity from `Authorization: Bearer <access token>` (401 otherwise)."""
    cached = request.get("principal")
    if cached is not None:
        return cached
    principal = principal_of(bearer_token(request))
    request["principal"] = principal
    return principal


def require_role(request: web.Request, *roles: str) -> Principal:
    """Authenticate, then 403 `insufficient permissions` unless the role is one of `roles`."""
    principal = authenticate(request)
    if roles and principal.role not in roles:
        raise ApiError(403, "insufficient permissions", enveloped=False)
    return principal


# ---------------------------------------------------------------- input

def parse_uuid(value: str, message_text: str) -> str:
    """A canonical lowercase UUID string, or 400 with `message_text`."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise bad_request(message_text) from None


def path_uuid(request: web.Request, name: str, message_text: str) -> str:
    return parse_uuid(request.match_info.get(name, ""), message_text)


def _go_name(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[_\s]", name) if p)


_TAGS = {
    "missing": "required", "string_too_short": "min", "too_short": "min",
    "string_too_long": "max", "too_long": "max", "greater_than": "gt",
    "greater_than_equal": "gte", "less_than": "lt", "less_than_equal": "lte",
    "literal_error": "oneof", "enum": "oneof", "value_error": "invalid",
    "uuid_parsing": "uuid", "uuid_type": "uuid",
}


def describe_validation_error(model: type[pydantic.BaseModel], exc: pydantic.ValidationError) -> str:
    """First error in the style of Go's validator (what existing clients have seen)."""
    err = exc.errors(include_url=False)[0]
    loc = ".".join(_go_name(str(p)) for p in err["loc"] if not isinstance(p, int)) or "Body"
    field = _go_name(str([p for p in err["loc"] if not isinstance(p, int)][-1])) if err["loc"] else "Body"
    etype = err["type"]
    if etype == "value_error":
        # Our own validators raise ValueError with a readable sentence: use it as is.
        return str(err.get("ctx", {}).get("error", err["msg"]))
    tag = _TAGS.get(etype)
    if tag is None:
        if etype.endswith("_type") or etype.endswith("_parsing"):
            return f"json: cannot unmarshal into field {loc} ({err['msg']})"
        tag = etype
    return (f"Key: '{model.__name__}.{loc}' Error:Field validation for '{field}' "
            f"failed on the '{tag}' tag")


async def read_json(request: web.Request, *, required: bool = True) -> Any:
    """The request body as JSON; 400 `invalid request body` when it is not JSON."""
    raw = await request.read()
    if not raw.strip():
        if required:
            raise bad_request("invalid request body")
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise bad_request("invalid request body") from None
    if not _storable(data):
        # PostgreSQL text cannot hold NUL or a lone surrogate (the driver raises), and bcrypt
        # refuses NUL: no domain can accept them, so they are a bad request wherever they are.
        raise bad_request("invalid request body: strings must be UTF-8 without NUL characters")
    return data


def _storable(value: Any) -> bool:
    """Whether every string (key or value) of a parsed JSON document is UTF-8 without NUL
    (`\\ud800` parses to a lone surrogate). Iterative: the document may be nested as deeply
    as the parser allows."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item or not item.isascii() and not _utf8(item):
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def parse_body(request: web.Request, model: type[M], *, required: bool = True) -> M:
    """Validate the JSON body against a pydantic model; 400 with a clear message otherwise."""
    data = await read_json(request, required=required)
    if not isinstance(data, dict):
        raise bad_request("invalid request body")
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise bad_request(describe_validation_error(model, exc)) from None


class Body(pydantic.BaseModel):
    """Base for request bodies: unknown keys are ignored, as clients send extras; a JSON null
    for a field that cannot hold null counts as absent (its default, or "required"), as in the
    original's JSON decoding. Flutter's generated `toJson()` sends null for every unset field."""

    model_config = pydantic.ConfigDict(extra="ignore", str_strip_whitespace=False)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _null_means_absent(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        not_nullable = _not_nullable_keys(cls)
        return {k: v for k, v in data.items() if v is not None or k not in not_nullable}


@functools.cache
def _not_nullable_keys(model: type[pydantic.BaseModel]) -> frozenset[str]:
    return frozenset(key for name, field in model.model_fields.items()
                     if not _accepts_none(field.annotation)
                     for key in (name, field.alias) if key)


def _accepts_none(annotation: Any) -> bool:
    if annotation in (None, type(None), Any):
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _accepts_none(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_accepts_none(arg) for arg in typing.get_args(annotation))
    return False


# Deep pages are refused rather than passed to OFFSET: a page past this is a client bug or a
# probe (and 2**63 overflows PostgreSQL's bigint), never a person paging through a list.
MAX_PAGE = 10_000


def page_params(request: web.Request, *, default_limit: int = 20, max_limit: int = 100,
                over_max: int | None = None) -> tuple[int, int]:
    """(page, limit) from the query. page<1 → 1; limit<1 → default; limit>max → `over_max`
    (the contract clamps some lists to the max and resets others to the default); unparsable
    values → the defaults; page > MAX_PAGE → 400."""
    def _int(name: str, default: int) -> int:
        try:
            return int(request.query.get(name, default))
        except ValueError:
            return default

    page = max(_int("page", 1), 1)
    if page > MAX_PAGE:
        raise bad_request(f"page must be at most {MAX_PAGE}")
    limit = _int("limit", default_limit)
    if limit < 1:
        limit = default_limit
    elif limit > max_limit:
        limit = max_limit if over_max is None else over_max
    return page, limit


def query_float(request: web.Request, name: str, *, required: bool, default: float | None = None,
                low: float | None = None, high: float | None = None,
                error: str | None = None) -> float | None:
    """A float query parameter within [low, high]; 400 `invalid <name>` otherwise."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        if required:
            raise bad_request(error or f"invalid {name}")
        return default
    try:
        value = float(raw)
    except ValueError:
        raise bad_request(error or f"invalid {name}") from None
    if not math.isfinite(value) or (low is not None and value < low) or (
            high is not None and value > high):
        raise bad_request(error or f"invalid {name}")
    return value


def only(items: Iterable[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    return [{k: item.get(k) for k in keys} for item in items]
