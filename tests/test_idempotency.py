"""Idempotency-Key through the gateway (web/idempotency.py): a retried POST never repeats its
effect, against the real worker and PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import psycopg2

from tests.conftest import Client
from tests.platform import Platform, wait_until
from tests.test_booking import booking_body

B = "/api/v1/bookings"


def booking(name: str = "Milo") -> dict[str, Any]:
    body = booking_body()
    body["pet_spec"]["name"] = name
    return body


async def post(http: aiohttp.ClientSession, client: Client, path: str, body: Any,
               key: str | None) -> tuple[int, Any, dict[str, str]]:
    headers = {"Authorization": f"Bearer {client.token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    async with http.post(client.base + path, json=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None), dict(resp.headers)


def bookings_of(p: Platform, owner: Client) -> int:
    return p.sql("SELECT count(*) AS n FROM bookings WHERE owner_id = %s",
                 (owner.user["id"],))[0]["n"]


async def test_same_key_same_request_gives_the_first_answer_once(platform, http, new_client):
    owner, other = await new_client("owner"), await new_client("owner")
    key = f"book-{uuid.uuid4()}"
    s1, b1, h1 = await post(http, owner, B, booking(), key)
    s2, b2, h2 = await post(http, owner, B, booking(), key)
    assert s1 == s2 == 201, (b1, b2)
    assert b2 == b1 and h2.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in h1
    assert bookings_of(platform, owner) == 1
    # The same key means nothing to another user.
    s3, b3, _ = await post(http, other, B, booking(), key)
    assert s3 == 201 and b3["data"]["id"] != b1["data"]["id"]
    # Without a key, every POST is its own request (as before).
    assert (await post(http, owner, B, booking(), None))[0] == 201
    assert bookings_of(platform, owner) == 2


async def test_same_key_other_request_is_422(platform, http, new_client):
    owner = await new_client("owner")
    key = str(uuid.uuid4())
    assert (await post(http, owner, B, booking("Milo"), key))[0] == 201
    status, body, _ = await post(http, owner, B, booking("Luna"), key)
    assert (status, body) == (422, {"success": False, "error":
                                    "Idempotency-Key was already used for a different request",
                                    "detail": ""})
    assert bookings_of(platform, owner) == 1


async def test_a_refused_request_is_answered_the_same_again(platform, http, new_client):
    owner = await new_client("owner")
    key, bad = str(uuid.uuid4()), {**booking(), "pet_spec": {"pet_type": "dragon", "name": "X",
                                                            "weight_kg": 4}}
    first = await post(http, owner, B, bad, key)
    again = await post(http, owner, B, bad, key)
    assert first[0] == again[0] == 400 and again[1] == first[1]
    assert again[2].get("Idempotent-Replayed") == "true"


async def test_bad_keys_are_400(platform, http, new_client):
    owner = await new_client("owner")
    for key in ("", "x" * 256, "has space", "tab\there"):
        status, body, _ = await post(http, owner, B, booking(), key)
        assert status == 400 and body["success"] is False, (key, status, body)
        assert body["error"].startswith("invalid Idempotency-Key"), body
    assert bookings_of(platform, owner) == 0


async def test_a_retry_after_a_gateway_timeout_creates_one_booking(fresh_platform: Platform, http):
    """The gateway gives up (504) on a POST that is still running on the worker; the client
    retries with the same key while it runs (409, try again) and after it finished (the first
    answer): one booking."""
    p = fresh_platform
    p.extra_env.update(KILAT_DB_LOCK_TIMEOUT_MS="60000", KILAT_DB_STATEMENT_TIMEOUT_MS="60000")
    worker = p.start_worker("w1")
    await p.wait_ready(worker)
    await p.wait_ready(p.start_gateway(RATE_LIMIT_PER_MIN="100000", GATEWAY_TIMEOUT_S="2"),
                       "/health")
    owner = Client(http, p.base_url)
    status, body = await owner.post("/api/v1/auth/register", {
        "email": f"o-{uuid.uuid4().hex[:8]}@kilat.test", "password": "Secret123!",
        "full_name": "Owner", "role": "owner"})
    assert status == 201, body
    owner.token, owner.user = body["data"]["access_token"], body["data"]["user"]
    key = str(uuid.uuid4())

    # Hold inserts into bookings: the worker's POST waits inside its transaction.
    blocker = psycopg2.connect(p.database_url)
    blocker.cursor().execute("LOCK TABLE bookings IN SHARE ROW EXCLUSIVE MODE")
    try:
        status, body, _ = await post(http, owner, B, booking(), key)
        assert status == 504, body
        status, body, headers = await post(http, owner, B, booking(), key)
        assert (status, body["error"]) == (
            409, "a request with this Idempotency-Key is still in progress"), body
        assert headers.get("Retry-After") == "1"
    finally:
        blocker.commit()
        blocker.close()

    async def answered() -> tuple[int, Any] | None:
        status, body, _ = await post(http, owner, B, booking(), key)
        return (status, body) if status != 409 else None
    status, body = await wait_until(answered, 30, what="the first attempt's answer")
    assert status == 201, body
    rows = p.sql("SELECT id FROM bookings WHERE owner_id = %s", (owner.user["id"],))
    assert [r["id"] for r in rows] == [body["data"]["id"]]

