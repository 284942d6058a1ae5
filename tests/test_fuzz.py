"""Bad input through the gateway: property-based bodies for every POST/PUT route, oversized and
malformed bodies, wrong content types, and injection strings that must stay inert.

Bodies are generated from the request schemas of the OpenAPI document built from the worker's
router (`web.openapi.build_spec`, which extracts the pydantic models the views validate with):
each field gets either a value of its declared type (edge cases included: huge integers, NaN,
infinities, empty and non-ASCII strings, NUL characters, injection strings, real ids) or a
JSON value of any other type, and whole bodies are sometimes not objects at all. Every answer
must be below 500, and every 4xx must carry the contract's error envelope.

Each route is called by a caller its domain lets through (owner, runner, shop, admin or
nobody for public routes), on real resources, so bodies reach validation and the database.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

import kilat
from tests.conftest import Client, signed_in_admin
from tests.platform import Platform, days_ahead, wait_until
from web.openapi import build_spec

SPEC = build_spec(kilat.app.web.web_app)
SCHEMAS: dict[str, Any] = SPEC["components"]["schemas"]
MAX_BODY = 1024 * 1024   # the worker's client_max_size (kilat.py)

INJECTIONS = ("' OR 1=1 --", '{"$gt":""}', "\u0000", "\ud800", "a\udfffb", "'; DROP TABLE users; --",
              "Robert'); DELETE FROM bookings; --", "%00", "${jndi:ldap://x}", "\\", "\"",
              "<script>alert(1)</script>", "../../etc/passwd")

# Views that read a body without a pydantic model (so the OpenAPI document has no schema).
HAND_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/v1/bookings/{id}/decline"): {"type": "object", "properties": {
        "reason": {"type": "string", "enum": ["too_far", "cannot_transport", "already_busy",
                                              "pickup_issue", "other"]}}},
    ("POST", "/api/v1/payouts/cash-out"): {"type": "object", "properties": {
        "amountMyrCents": {"type": "integer"},
        "destinationId": {"type": "string", "format": "uuid"}}},
    ("POST", "/api/v1/notifications/fcm-token"): {"type": "object", "properties": {
        "token": {"type": "string"}}},
}


def body_schema(method: str, path: str) -> dict[str, Any] | None:
    op = SPEC["paths"][path][method.lower()]
    ref = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    if ref is not None:
        return ref
    return HAND_SCHEMAS.get((method, path))


WRITE_ROUTES = sorted((m.upper(), p) for p, ops in SPEC["paths"].items() for m in ops
                      if m in ("post", "put"))
BODY_ROUTES = [r for r in WRITE_ROUTES if body_schema(*r) is not None]


# ---------------------------------------------------------------- who calls what, on what

def actor(method: str, path: str) -> str:
    """A caller the route lets through, so a body gets past the role checks."""
    op = SPEC["paths"][path][method.lower()]
    if "security" not in op:
        return "anon"
    if path == "/api/v1/auth/logout":
        return "leaver"  # logout ends every session of its caller: not one the others use
    if path.startswith("/api/v1/admin/") or path in (
            "/api/v1/promos", "/api/v1/payments/{payment_id}/refund"):
        return "admin"
    if path.startswith(("/api/v1/runners", "/api/v1/payouts")) or path in (
            "/api/v1/bookings/{id}/accept", "/api/v1/bookings/{id}/decline",
            "/api/v1/bookings/{id}/pickup", "/api/v1/bookings/{id}/deliver",
            "/api/v1/bookings/{id}/photo"):
        return "runner"
    if path.startswith("/api/v1/petshops"):
        return "shop"
    return "owner"


# Path parameter → the world's resource it names. Lifecycle actions get their own booking so
# a generated body that cancels or declines it does not change what the other routes see.
PATH_ARGS: dict[str, dict[str, str]] = {
    "/api/v1/bookings/{id}/photo": {"id": "booking"},
    "/api/v1/tracking/{booking_id}/share": {"booking_id": "booking"},
    "/api/v1/chat/{booking_id}/messages": {"booking_id": "booking"},
    "/api/v1/payments/{payment_id}/refund": {"payment_id": "payment"},
    "/api/v1/pets/{id}": {"id": "pet"},
    "/api/v1/petshops/{shop_id}": {"shop_id": "shop"},
    "/api/v1/admin/users/{id}/ban": {"id": "victim"},
    "/api/v1/admin/users/{id}/unban": {"id": "victim"},
    "/api/v1/notifications/{id}/read": {"id": "notification"},
}


@dataclass(repr=False)
class World:
    platform: Platform
    http: aiohttp.ClientSession
    clients: dict[str, Client]
    ids: dict[str, str] = field(default_factory=dict)
    requests: int = 0
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))

    def path(self, route: str) -> str:
        args = PATH_ARGS.get(route, {})
        out = route
        for name in ("id", "booking_id", "payment_id", "shop_id"):
            key = args.get(name, "lifecycle_booking" if route.startswith("/api/v1/bookings/")
                           else "unknown")
            out = out.replace("{" + name + "}", self.ids[key])
        return out

    async def send(self, role: str, method: str, path: str, raw: bytes | None,
                   content_type: str = "application/json") -> tuple[int, Any, bytes]:
        headers = {"Content-Type": content_type}
        token = self.clients[role].token if role != "anon" else None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.requests += 1
        async with self.http.request(method, self.platform.base_url + path, data=raw,
                                     headers=headers) as resp:
            self.statuses[f"{method} {path}"][resp.status] += 1
            text = await resp.read()
            try:
                body = json.loads(text) if text else None
            except ValueError:
                body = text.decode(errors="replace")
            return resp.status, body, text

    def worker_errors(self) -> str:
        log = "\n".join(w.log_tail(400) for w in self.platform.workers)
        lines = log.splitlines()
        hits = [i for i, line in enumerate(lines) if "unhandled error" in line or "Traceback" in line]
        if not hits:
            return "(no traceback in the worker log)"
        return "\n".join(lines[hits[-1]:hits[-1] + 40])


async def _ok(c: Client, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    code, resp = await c.call(method, path, body)
    assert code == status, f"set-up {method} {path}: {code} {resp}"
    return resp.get("data") if isinstance(resp, dict) else resp


async def _sign_up(http: aiohttp.ClientSession, base: str, role: str) -> Client:
    c = Client(http, base)
    data = await _ok(c, "POST", "/api/v1/auth/register", {
        "email": f"fuzz-{role}-{uuid.uuid4().hex[:8]}@kilat.test", "password": "Secret123!",
        "full_name": f"Fuzz {role}", "role": role}, 201)
    c.token, c.user = data["access_token"], data["user"]
    return c




BOOKING = {"pet_spec": {"pet_type": "cat", "name": "Milo", "weight_kg": 4},
           "pickup_address": {"line1": "1 Jalan Ampang", "city": "KL", "state": "WP",
                              "country": "MY", "latitude": 3.139, "longitude": 101.6869},
           "dropoff_address": {"line1": "2 Jalan Tun Razak", "city": "KL", "state": "WP",
                               "country": "MY", "latitude": 3.15, "longitude": 101.71}}


@pytest.fixture(scope="module")
async def world(platform: Platform) -> AsyncIterator[World]:
    async with aiohttp.ClientSession() as http:
        base = platform.base_url
        clients = {"anon": Client(http, base)}
        for role in ("owner", "runner", "shop"):
            clients[role] = await _sign_up(http, base, role)
        clients["leaver"] = await _sign_up(http, base, "owner")
        clients["admin"] = await signed_in_admin(platform, http)
        w = World(platform, http, clients)
        owner, runner = clients["owner"], clients["runner"]
        await _ok(runner, "POST", "/api/v1/runners", {
            "vehicle_type": "car", "vehicle_plate": "FZ 1", "vehicle_model": "Myvi",
            "vehicle_year": 2020}, 201)
        await _ok(runner, "POST", "/api/v1/runners/me/online",
                  {"latitude": 3.139, "longitude": 101.6869})
        w.ids["booking"] = (await _ok(owner, "POST", "/api/v1/bookings", BOOKING, 201))["id"]
        w.ids["payment"] = (await _ok(owner, "POST", "/api/v1/payments/initiate",
                                      {"booking_id": w.ids["booking"]}, 201))["id"]
        await _ok(runner, "POST", f"/api/v1/bookings/{w.ids['booking']}/accept")
        w.ids["lifecycle_booking"] = (await _ok(owner, "POST", "/api/v1/bookings", BOOKING,
                                                201))["id"]
        w.ids["pet"] = (await _ok(owner, "POST", "/api/v1/pets",
                                  {"name": "Milo", "pet_type": "cat"}, 201))["id"]
        w.ids["shop"] = (await _ok(clients["shop"], "POST", "/api/v1/petshops", {
            "name": "Fuzz Shop", "address": "1 Jalan", "latitude": 3.1, "longitude": 101.6,
            "category": "vet"}, 201))["id"]
        w.ids["destination"] = (await _ok(runner, "POST", "/api/v1/payouts/destinations", {
            "bank_name": "Maybank", "account_number": "1234567890", "account_holder": "R"},
            201))["id"]
        w.ids["victim"] = (await _sign_up(http, base, "owner")).user["id"]
        w.ids["unknown"] = str(uuid.uuid4())
        w.ids["refresh_token"] = (await _ok(clients["anon"], "POST", "/api/v1/auth/login", {
            "email": owner.user["email"], "password": "Secret123!"}))["refresh_token"]

        async def notified() -> str | None:
            code, body = await owner.get("/api/v1/notifications")
            return code == 200 and body["data"] and body["data"][0]["id"]

        w.ids["notification"] = await wait_until(notified, 60, what="a notification")
        w.ids["user"] = owner.user["id"]
        w.ids["runner_user"] = runner.user["id"]
        started = time.monotonic()
        yield w
        print(f"\nfuzz: {w.requests} requests in {time.monotonic() - started:.1f}s")
        total = sum(w.statuses.values(), Counter())
        print("fuzz: statuses " + ", ".join(f"{k}: {v}" for k, v in sorted(total.items())))
        if os.environ.get("KILAT_FUZZ_STATS"):
            for path, counts in sorted(w.statuses.items()):
                print(f"  {path}: {dict(sorted(counts.items()))}")


# ---------------------------------------------------------------- strategies

BIG_INTS = st.sampled_from([0, -1, 1, 2**31, -(2**31) - 1, 2**63, -(2**63) - 1, 10**30])
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | BIG_INTS
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30)
    | st.sampled_from(INJECTIONS),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return SCHEMAS[ref.rsplit("/", 1)[-1]] if ref else schema


def typed(schema: dict[str, Any], world_ids: list[str]) -> st.SearchStrategy[Any]:
    """Values of the schema's own type, biased to edges (limits, NUL, injections, real ids)."""
    schema = _resolve(schema)
    if "anyOf" in schema or "oneOf" in schema:
        return st.one_of([typed(s, world_ids) for s in schema.get("anyOf", schema.get("oneOf"))])
    if "enum" in schema or "const" in schema:
        values = schema.get("enum", [schema.get("const")])
        return st.sampled_from(values) | st.sampled_from(values).map(str.upper)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return obj(schema, world_ids)
    if kind == "string":
        limit = schema.get("maxLength")
        options = [st.text(max_size=40), st.sampled_from(INJECTIONS), st.just(""),
                   st.text(alphabet="ab\u00e9\U0001f600", min_size=300, max_size=3000)]
        if limit:
            options.append(st.text(min_size=limit, max_size=limit + 1))
        if schema.get("format") == "uuid" or world_ids:
            options.append(st.uuids().map(str))
            if world_ids:
                options.append(st.sampled_from(world_ids))
        return st.one_of(options)
    if kind == "integer":
        return st.integers() | BIG_INTS
    if kind == "number":
        return (st.floats(allow_nan=True, allow_infinity=True) | st.integers() | BIG_INTS
                | st.floats(min_value=-200, max_value=200))
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(typed(schema.get("items", {}), world_ids), max_size=12)
    return ANY_JSON


def obj(schema: dict[str, Any], world_ids: list[str],
        wild: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    """An object with the schema's keys: each typed (or, when `wild`, possibly of a random
    type); optional keys may be left out; unknown keys may be added."""
    props = schema.get("properties", {})
    required = set(schema.get("required", []))

    def field_value(prop: dict[str, Any]) -> st.SearchStrategy[Any]:
        return typed(prop, world_ids) | ANY_JSON if wild else typed(prop, world_ids)

    required_part = st.fixed_dictionaries({k: field_value(v) for k, v in props.items()
                                           if k in required},
                                          optional={k: field_value(v) for k, v in props.items()
                                                    if k not in required})
    return st.builds(lambda base, extra: {**extra, **base}, required_part,
                     st.dictionaries(st.text(max_size=6), ANY_JSON, max_size=2))


EDGE = st.one_of(ANY_JSON, st.sampled_from(INJECTIONS), BIG_INTS, st.text(min_size=256, max_size=5000),
                st.floats(allow_nan=True, allow_infinity=True), st.just(""), st.just(None))


def leaves(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Key paths of a valid body, nested objects and list items included."""
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += leaves(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += leaves(v, (*prefix, i))
    return out


def mutated(valid: Any) -> st.SearchStrategy[Any]:
    """A valid body with one value replaced by an edge value (or its key removed)."""
    paths = leaves(valid)
    if not paths:
        return st.just(valid)

    def apply(path: tuple[Any, ...], value: Any, drop: bool) -> Any:
        doc = json.loads(json.dumps(valid))
        target = doc
        for key in path[:-1]:
            target = target[key]
        if drop and isinstance(target, dict):
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return doc

    return st.builds(apply, st.sampled_from(paths), EDGE, st.sampled_from([False, False, True]))


def bodies(schema: dict[str, Any], world_ids: list[str],
           valid: Any = None) -> st.SearchStrategy[bytes]:
    """One bad field in an otherwise valid body (reaches the database), every field of the
    declared type with edge values, every field of any type, or not an object at all."""
    options = [obj(_resolve(schema), world_ids, wild=False), obj(_resolve(schema), world_ids),
               ANY_JSON]
    if valid is not None:
        options = [mutated(valid), mutated(valid), mutated(valid), st.just(valid), *options]
    documents = st.one_of(options)
    return documents.map(lambda d: json.dumps(d, allow_nan=True).encode()) | st.just(b"")


# ---------------------------------------------------------------- valid bodies to mutate

def valid_body(method: str, route: str, w: World, u: str) -> Any:
    """A body the route accepts (`u`: a fresh hex string for unique fields)."""
    ids = w.ids
    shop = {"name": "Shop", "address": "1 Jalan", "latitude": 3.1, "longitude": 101.6,
            "phone": "+60123456789", "email": "s@kilat.test", "category": "vet",
            "services": ["bath"], "image_url": "https://img.test/s.jpg",
            "opening_hours": "9-5", "description": "d"}
    pet = {"name": "Rex", "pet_type": "dog", "breed": "Husky", "weight_kg": 3.5, "age_months": 3,
           "allergies": "none", "special_needs": "", "notes": "n", "photo_url": "https://p/x.jpg",
           "vaccination_status": "done"}
    booking = {**BOOKING, "pet_spec": {**BOOKING["pet_spec"], "breed": "Persian", "age_months": 3,
                                       "vaccinations": [{"vaccine_name": "rabies",
                                                         "date_given": "2026-01-01"}]},
               "scheduled_at": days_ahead(1)[0], "notes": "n"}
    bodies = {
        "/api/v1/auth/register": {"email": f"f{u}@kilat.test", "password": "Secret123!",
                                  "full_name": "Fuzz", "role": "owner", "phone": "+60123456789"},
        "/api/v1/auth/login": {"email": w.clients["owner"].user["email"], "password": "Secret123!"},
        "/api/v1/auth/refresh": {"refresh_token": ids["refresh_token"]},
        "/api/v1/auth/forgot-password": {"email": w.clients["owner"].user["email"]},
        "/api/v1/auth/reset-password": {"token": "ab" * 32, "newPassword": "Secret123!"},
        "/api/v1/auth/profile": {"full_name": "Fuzz Owner", "phone": "+60123456789",
                                 "avatar_url": "https://img.test/a.png"},
        "/api/v1/runners/apply": {"name": "Ali", "phone": "+60123456789", "icNumber": u,
                                  "vehicleType": "car", "plateNumber": "W1",
                                  "petExperience": ["cats"], "comfortableWithLivePets": True,
                                  "consentAcknowledged": True},
        "/api/v1/bookings": booking,
        "/api/v1/bookings/{id}/decline": {"reason": "too_far"},
        "/api/v1/bookings/{id}/cancel": {"reason": "changed plans"},
        "/api/v1/bookings/{id}/photo": {"photo_type": "pickup", "photo_url": "https://p/1.jpg",
                                        "caption": "c"},
        "/api/v1/chat/{booking_id}/messages": {"message_type": "text", "content": "hi"},
        "/api/v1/notifications/fcm-token": {"token": "fcm-" + u},
        "/api/v1/notifications/preferences": {
            "enable_push": True, "enable_sms": True, "enable_email": False,
            "phone_number": "+60123456789", "email": "o@kilat.test",
            "quiet_hours_start": "22:00", "quiet_hours_end": "07:00",
            "timezone": "Asia/Kuala_Lumpur"},
        "/api/v1/payments/initiate": {"booking_id": ids["lifecycle_booking"], "promo_code": "NONE",
                                      "customer_email": "o@kilat.test", "amount_cents": 1,
                                      "currency": "MYR"},
        "/api/v1/payments/{payment_id}/refund": {"reason": "goodwill"},
        "/api/v1/payouts/cash-out": {"amountMyrCents": 1000, "destinationId": ids["destination"]},
        "/api/v1/payouts/destinations": {"bank_name": "Maybank", "account_number": "1234567890",
                                         "account_holder": "R"},
        "/api/v1/pets": pet,
        "/api/v1/pets/{id}": pet,
        "/api/v1/petshops": shop,
        "/api/v1/petshops/{shop_id}": shop,
        "/api/v1/promos": {"code": "P" + u[:12], "discount_type": "percentage",
                           "discount_value": 10, "min_amount_cents": 100,
                           "max_discount_cents": 500, "max_uses": 5,
                           "valid_from": "2026-01-01T00:00:00Z",
                           "valid_until": "2030-01-01T00:00:00Z"},
        "/api/v1/promos/validate": {"code": "NONE", "amount_cents": 1000},
        "/api/v1/reviews": {"booking_id": ids["booking"], "reviewee_id": ids["runner_user"],
                            "reviewee_type": "runner", "rating": 5, "comment": "great",
                            "photo_urls": ["https://p/r.jpg"]},
        "/api/v1/runners": {"full_name": "R", "phone": "+60123456789", "vehicle_type": "car",
                            "vehicle_plate": "W2", "vehicle_model": "Myvi", "vehicle_year": 2020,
                            "air_conditioned": True},
        "/api/v1/runners/me": {"full_name": "R", "phone": "+60123456789", "vehicle_type": "van",
                               "vehicle_plate": "W3", "vehicle_model": "Hiace",
                               "vehicle_year": 2021, "air_conditioned": False},
        "/api/v1/runners/me/crates": {"size": "small", "pet_types": ["cat"], "max_weight_kg": 8,
                                      "width_cm": 40, "height_cm": 30, "depth_cm": 50,
                                      "ventilated": True, "temperature_controlled": False},
        "/api/v1/runners/me/location": {"latitude": 3.14, "longitude": 101.69, "speed_kmh": 20,
                                        "heading_degrees": 90},
        "/api/v1/runners/me/online": {"latitude": 3.14, "longitude": 101.69},
        "/api/v1/subscriptions": {"plan": "basic"},
    }
    return bodies.get(route)


# ---------------------------------------------------------------- checks

def envelope_problem(status: int, body: Any) -> str | None:
    if status >= 500:
        return f"server error {status}"
    if 400 <= status < 500:
        if not isinstance(body, dict) or not isinstance(body.get("error"), str):
            return f"4xx without an error envelope: {body!r}"
        if body.get("success", False) is not False:
            return f"4xx with success != false: {body!r}"
    return None


async def check(world: World, role: str, method: str, path: str, raw: bytes | None,
                content_type: str = "application/json") -> tuple[int, Any]:
    status, body, _ = await world.send(role, method, path, raw, content_type)
    problem = envelope_problem(status, body)
    if problem:
        sent = raw if raw is None or len(raw) < 300 else raw[:300] + b"..."
        pytest.fail(f"{method} {path} as {role} with body {sent!r} ({content_type}): {problem}\n"
                    f"--- worker log ---\n{world.worker_errors()}")
    return status, body


# ---------------------------------------------------------------- property-based bodies

# 25 per route keeps the module under a minute; raise KILAT_FUZZ_EXAMPLES for a deeper run.
EXAMPLES = int(os.environ.get("KILAT_FUZZ_EXAMPLES", "25"))


@pytest.mark.parametrize(("method", "route"), WRITE_ROUTES, ids=[f"{m} {p}" for m, p in WRITE_ROUTES])
@settings(max_examples=EXAMPLES, deadline=None, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=st.data())
async def test_generated_bodies_never_5xx(world: World, method: str, route: str, data) -> None:
    schema = body_schema(method, route) or {"type": "object", "properties": {}}
    ids = [world.ids[k] for k in ("booking", "payment", "user", "runner_user", "shop",
                                  "destination", "pet")]
    valid = valid_body(method, route, world, data.draw(st.uuids(), label="unique").hex)
    raw = data.draw(bodies(schema, ids, valid), label="body")
    await check(world, actor(method, route), method, world.path(route), raw)


# ---------------------------------------------------------------- explicit cases

def _body_routes_ids() -> list[str]:
    return [f"{m} {p}" for m, p in BODY_ROUTES]


async def test_oversized_bodies_are_413_json(world: World) -> None:
    """Just over the worker's 1 MiB limit: 413 in the envelope, on every route reading a body;
    routes that ignore bodies must not fail either."""
    raw = json.dumps({"pad": "x" * MAX_BODY}).encode()
    assert len(raw) > MAX_BODY
    wrong = []
    for method, route in WRITE_ROUTES:
        status, body = await check(world, actor(method, route), method, world.path(route), raw)
        if (method, route) in BODY_ROUTES and (status, body) != (
                413, {"success": False, "error": "request body too large"}):
            wrong.append(f"{method} {route}: {status} {body!r}")
    assert not wrong, "\n".join(wrong)


MALFORMED = [b"{", b"not json", b'{"a":}', b"{'single': 'quotes'}", b'{"a":1,}', b"\xff\xfe\x00",
             b"[" * 50000 + b"]" * 50000, b'{"a":' * 50000 + b"1" + b"}" * 50000,
             b'{"a": NaN', b"\x00", b'"unterminated']


async def test_malformed_json_is_400_invalid_request_body(world: World) -> None:
    wrong = []
    for method, route in BODY_ROUTES:
        for raw in MALFORMED:
            status, body = await check(world, actor(method, route), method, world.path(route), raw)
            if (status, body) != (400, {"success": False, "error": "invalid request body"}):
                wrong.append(f"{method} {route} {raw[:20]!r}: {status} {body!r}")
    assert not wrong, "\n".join(wrong)


async def test_json_documents_that_are_not_objects_are_400(world: World) -> None:
    wrong = []
    for method, route in BODY_ROUTES:
        for raw in (b"[]", b"[1,2]", b'"text"', b"42", b"null", b"true"):
            status, body = await check(world, actor(method, route), method, world.path(route), raw)
            if status != 400:
                wrong.append(f"{method} {route} {raw!r}: {status} {body!r}")
    assert not wrong, "\n".join(wrong)


async def test_wrong_content_types(world: World) -> None:
    """Bodies are read as JSON whatever the Content-Type (as Gin's ShouldBindJSON did): a JSON
    body labelled text/plain works; form and multipart bodies are not JSON → 400."""
    path = "/api/v1/promos/validate"
    good = json.dumps({"code": "NOPE", "amount_cents": 1000}).encode()
    as_json = await check(world, "owner", "POST", path, good)
    assert as_json[0] == 200
    assert await check(world, "owner", "POST", path, good, "text/plain") == as_json
    assert await check(world, "owner", "POST", path, good, "application/xml") == as_json
    multipart = (b"--xyz\r\nContent-Disposition: form-data; name=\"code\"\r\n\r\nNOPE\r\n"
                 b"--xyz--\r\n")
    wrong = []
    for method, route in BODY_ROUTES:
        for raw, ctype in ((b"code=NOPE&amount_cents=1000", "application/x-www-form-urlencoded"),
                           (multipart, "multipart/form-data; boundary=xyz"),
                           (b"<a>1</a>", "application/xml")):
            status, body = await check(world, actor(method, route), method, world.path(route),
                                       raw, ctype)
            if (status, body) != (400, {"success": False, "error": "invalid request body"}):
                wrong.append(f"{method} {route} {ctype}: {status} {body!r}")
    assert not wrong, "\n".join(wrong)


# ---------------------------------------------------------------- injection strings

INERT = ("' OR 1=1 --", '{"$gt":""}', "\u0000", "Robert'); DROP TABLE bookings; --",
         "\ud800")   # the last: a lone surrogate, valid JSON (\\ud800) but not UTF-8


def storable(text: str) -> bool:
    """PostgreSQL text holds any UTF-8 except NUL; a lone surrogate is not UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def count(p: Platform, table: str) -> int:
    return p.sql(f"SELECT count(*) AS n FROM {table}")[0]["n"]  # noqa: S608 - fixed names


async def test_injection_strings_in_bodies_are_stored_literally_or_rejected(world: World) -> None:
    p = world.platform
    owner = world.clients["owner"]
    users, bookings = count(p, "users"), count(p, "bookings")
    chats, pets = count(p, "chat_messages"), count(p, "pets")
    created = {"users": 0, "bookings": 0, "chat_messages": 0, "pets": 0}
    for text in INERT:
        # Sign-up: a name is stored as typed (NUL cannot be stored: 400).
        raw = json.dumps({"email": f"inj-{uuid.uuid4().hex[:8]}@kilat.test",
                          "password": "Secret123!", "full_name": text, "role": "owner"}).encode()
        status, body = await check(world, "anon", "POST", "/api/v1/auth/register", raw)
        if status == 201:
            created["users"] += 1
            assert body["data"]["user"]["full_name"] == text
            rows = p.sql("SELECT full_name FROM users WHERE id = %s", (body["data"]["user"]["id"],))
            assert rows == [{"full_name": text}]
        else:
            assert status == 400 and not storable(text), (text, status, body)

        # Booking notes and pet name.
        booking = json.loads(json.dumps(BOOKING))
        booking["pet_spec"]["name"] = text
        booking["notes"] = text
        status, body = await check(world, "owner", "POST", "/api/v1/bookings",
                                   json.dumps(booking).encode())
        if status == 201:
            created["bookings"] += 1
            _, got = await owner.get(f"/api/v1/bookings/{body['data']['id']}")
            assert got["data"]["pet_spec"]["name"] == text and got["data"]["notes"] == text
        else:
            assert status == 400 and not storable(text), (text, status, body)

        # Chat message content.
        path = f"/api/v1/chat/{world.ids['booking']}/messages"
        status, body = await check(world, "owner", "POST", path,
                                   json.dumps({"message_type": "text", "content": text}).encode())
        if status == 201:
            created["chat_messages"] += 1
            assert body["data"]["content"] == text
        else:
            assert status == 400 and not storable(text), (text, status, body)

        # Pet profile.
        status, body = await check(world, "owner", "POST", "/api/v1/pets",
                                   json.dumps({"name": text, "pet_type": "cat",
                                               "notes": text}).encode())
        if status == 201:
            created["pets"] += 1
            assert body["data"]["name"] == text
        else:
            assert status == 400 and not storable(text), (text, status, body)

    # Credentials: nothing logs in.
    for email, password in (("' OR 1=1 --", "x"), (owner.user["email"], "' OR 1=1 --"),
                            ({"$gt": ""}, {"$gt": ""}), (owner.user["email"] + "'--", "x")):
        status, body = await check(world, "anon", "POST", "/api/v1/auth/login",
                                   json.dumps({"email": email, "password": password}).encode())
        assert status in (400, 401), (email, status, body)
        assert "access_token" not in json.dumps(body)

    assert count(p, "users") == users + created["users"]
    assert count(p, "bookings") == bookings + created["bookings"]
    assert count(p, "chat_messages") == chats + created["chat_messages"]
    assert count(p, "pets") == pets + created["pets"]
    assert created["bookings"] == sum(storable(t) for t in INERT)


# aiohttp's path parameters exclude braces, so such a segment is an unknown route: the
# reference's plain-text 404 of a service, passed through by the gateway.
UNMATCHED = (404, "404 page not found")


def q(value: str) -> str:
    return quote(value, safe="", errors="surrogatepass")


async def test_injection_strings_in_query_and_path_are_inert(world: World) -> None:
    b = world.ids["booking"]
    wrong = []
    for text in INERT + ("1 UNION SELECT password_hash FROM users", "-1", "1e309", "NaN"):
        v = q(text)
        cases = [
            ("owner", f"/api/v1/bookings?status={v}", {400}),
            ("owner", f"/api/v1/bookings?page={v}&limit={v}", {200}),
            ("runner", f"/api/v1/bookings?status=requested&page={v}", {200}),
            ("admin", f"/api/v1/admin/users?page={v}&limit={v}", {200}),
            ("admin", f"/api/v1/admin/bookings?status={v}", {400}),
            ("owner", f"/api/v1/petshops?category={v}", {200}),
            ("owner", f"/api/v1/petshops/nearby?latitude={v}&longitude=101.6", {400}),
            ("owner", f"/api/v1/runners/nearby?latitude=3.1&longitude=101.6&radius_km={v}", {400}),
            ("owner", f"/api/v1/notifications?page={v}&limit={v}", {200}),
            ("owner", f"/api/v1/chat/{b}/messages?page={v}&limit={v}", {200}),
            ("owner", f"/api/v1/payments?page={v}", {200}),
            ("anon", f"/api/v1/reviews/runner/{world.ids['unknown']}?page={v}", {200}),
            ("owner", f"/api/v1/bookings/{v}", {400}),
            ("owner", f"/api/v1/payments/{v}", {400}),
            ("owner", f"/api/v1/tracking/{v}", {400}),
            ("owner", f"/api/v1/petshops/{v}", {400}),
            ("owner", f"/api/v1/runners/{v}", {400}),
            ("anon", f"/api/v1/tracking/shared/{v}", {404}),
            ("anon", f"/api/v1/reviews/rating/{v}/{world.ids['unknown']}", {400}),
            ("owner", f"/api/v1/notifications/{v}", {400}),
            ("admin", f"/api/v1/admin/users/{v}", {400}),
        ]
        for role, path, allowed in cases:
            if text in ("-1", "1e309", "NaN") and "page=" not in path and "radius_km" not in path:
                continue
            if text == "-1" and "radius_km" in path:
                allowed = {400}
            if "\x00" in text:
                allowed = {400}   # refused before any view: no NUL reaches SQL
            if text == "\ud800" and v in path.split("?", 1)[0]:
                allowed = {400}   # a path that is not UTF-8: the gateway refuses it
            status, body, _ = await world.send(role, "GET", path, None)
            in_path = v in path.split("?", 1)[0]
            if in_path and ("{" in text or "}" in text) and (status, body) == UNMATCHED:
                continue  # braces never match a path parameter: the contract's unknown route
            problem = envelope_problem(status, body)
            if problem or status not in allowed:
                wrong.append(f"GET {path} as {role}: {status} {body!r} {problem or ''}")
    assert not wrong, "\n".join(wrong) + "\n--- worker log ---\n" + world.worker_errors()


async def test_page_past_the_bound_is_a_clear_400_on_every_list(world: World) -> None:
    """A page deep enough to overflow OFFSET (bigint) was a 500; past 10,000 it is now a 400,
    and the largest allowed page is an empty list."""
    b, unknown = world.ids["booking"], world.ids["unknown"]
    lists = [("owner", "/api/v1/bookings"), ("admin", "/api/v1/admin/bookings"),
             ("owner", "/api/v1/payments"), ("admin", "/api/v1/admin/payments"),
             ("owner", "/api/v1/notifications"), ("owner", "/api/v1/reviews/me"),
             ("anon", f"/api/v1/reviews/runner/{unknown}"), ("owner", f"/api/v1/chat/{b}/messages"),
             ("admin", "/api/v1/admin/users")]
    for role, path in lists:
        for page in ("9223372036854775807", "10001", "1" + "0" * 40):
            status, body, _ = await world.send(role, "GET", f"{path}?page={page}&limit=100", None)
            assert (status, body) == (400, {"success": False,
                                            "error": "page must be at most 10000"}), (path, page)
        status, body, _ = await world.send(role, "GET", f"{path}?page=10000&limit=100", None)
        assert status == 200 and body["data"] == [], (path, status, body)
        assert body["pagination"]["page"] == 10000


WORKER_ONLY = ("/metrics", "/readiness")


async def test_path_tricks_never_reach_worker_only_routes(world: World) -> None:
    """Dot segments, also percent-encoded, sent as is (clients would resolve them): the gateway
    normalises before routing and never forwards outside its route table."""
    platform, http = world.platform, world.http
    worker = platform.workers[0]
    for path in WORKER_ONLY:  # they exist on the worker, so reaching them would show
        async with http.get(worker.url + path) as r:
            assert r.status == 200
    tricks = []
    for target in ("metrics", "readiness"):
        tricks += [
            f"/api/v1/auth/../../../{target}",
            f"/api/v1/auth/%2e%2e/%2e%2e/%2e%2e/{target}",
            f"/api/v1/auth/%2E%2E/%2E%2E/%2E%2E/{target}",
            f"/api/v1/auth/.%2e/.%2e/%2e./{target}",
            f"/api/v1/auth/..%2f..%2f..%2f{target}",
            f"/api/v1/auth/%2e%2e%2f%2e%2e%2f%2e%2e%2f{target}",
            f"/api/v1/bookings/x/../../../../{target}",
            f"/ws/tracking/../../{target}",
            f"/api/v1/auth/./../../../{target}?x=1",
            f"/health/../{target}",
            f"/api/../../../../{target}",
        ]
    for raw in tricks:
        async with http.get(URL(platform.base_url + raw, encoded=True)) as r:
            body = await r.text()
            assert r.status in (400, 404), (raw, r.status, body[:200])
            assert r.headers["Content-Type"].startswith("application/json"), raw
            assert '"success": false' in body or '"success":false' in body, (raw, body)
            assert "kilat_" not in body and "python_gc" not in body, raw
    # Dot segments that stay inside their prefix are resolved and served normally.
    raw = "/api/v1/subscriptions/x/../plans"
    async with http.get(URL(platform.base_url + raw, encoded=True)) as r:
        assert r.status == 200, await r.text()


async def test_timezone_naming_a_directory_or_too_long_is_400(world: World) -> None:
    for tz in ("Asia", "x" * 300):
        raw = json.dumps({"timezone": tz}).encode()
        status, body, _ = await world.send("owner", "PUT", "/api/v1/notifications/preferences",
                                           raw)
        assert status == 400, (tz[:20], status, body)


async def test_worker_survived_the_fuzzing(world: World) -> None:
    """Whatever ran before in this module: the worker still answers and is ready."""
    for w in world.platform.workers:
        assert w.alive()
        async with world.http.get(w.url + "/readiness") as resp:
            assert resp.status == 200
    status, body = await world.clients["owner"].get("/api/v1/auth/profile")
    assert status == 200 and body["success"] is True
