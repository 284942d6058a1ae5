"""Idempotency-Key on client requests (Stripe-style): a retry never repeats an effect.

A client that got no answer (the gateway timed out, the connection dropped) sends the request
again with the same `Idempotency-Key` header and gets the first request's answer instead of a
second booking, payment, subscription, cash-out or review. It applies to every authenticated
POST under /api/v1/ except /api/v1/auth/* (token responses are never stored); keys are per user
and kept 24 hours.

* same key, same request (method, path, body) → the stored answer, `Idempotent-Replayed: true`;
* same key, another request → 422;
* same key while the first attempt is still running → 409 with `Retry-After`;
* an attempt that vanished before taking effect (its worker was killed) is taken over once its
  lease (`IDEMPOTENCY_LEASE_S`, 60 s) has run out;
* an attempt that took effect but died before answering → 409 saying so (read the resource).

The claim is bound to the request's effects: the first transaction the view opens marks the
record `committed` in the same transaction (core.db.first_transaction_hook), and refuses to take
effect if another attempt took the key over meanwhile. The lease is longer than the gateway's
timeout plus the database's idle-in-transaction timeout, so an attempt frozen mid-transaction
has been cut off by the server before anyone takes over.
"""

from __future__ import annotations

import hashlib
import re
import uuid

from aiohttp import web

from core.config import settings
from core.db import db, first_transaction_hook
from stores import idempotency as store
from web.http import ApiError, authenticate, bad_request

HEADER = "Idempotency-Key"
KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")


def applies(request: web.Request) -> bool:
    return (request.method == "POST" and HEADER in request.headers
            and request.path.startswith("/api/v1/")
            and not request.path.startswith("/api/v1/auth/"))


def fingerprint(request: web.Request, body: bytes) -> str:
    digest = hashlib.sha256(f"{request.method}\0{request.path_qs}\0".encode())
    digest.update(body)
    return digest.hexdigest()


def replay(row: dict) -> web.Response:
    return web.Response(status=row["status"], body=bytes(row["body"] or b""),
                        content_type=row["content_type"] or "application/json",
                        headers={"Idempotent-Replayed": "true"})


IN_PROGRESS = "a request with this Idempotency-Key is still in progress"


async def _claim(scope: str, key: str, request_hash: str, attempt: str) -> web.Response | None:
    """Claim the key for `attempt`; the response to give instead when it cannot be claimed."""
    lease = settings().idempotency_lease_s
    async with db.transaction() as conn:
        if await store.claim(conn, scope, key, request_hash, attempt, lease):
            return None
        row = await store.held(conn, scope, key)
        if row is None:  # the first attempt is inside its transaction right now
            raise ApiError(409, IN_PROGRESS, "", headers={"Retry-After": "1"})
        if row["stale"]:
            await store.restart(conn, scope, key, request_hash, attempt, lease)
            return None
        if row["request_hash"] != request_hash:
            raise ApiError(422, "Idempotency-Key was already used for a different request", "")
        if row["state"] == "done":
            return replay(row)
        if not row["lease_expired"]:
            raise ApiError(409, IN_PROGRESS, "", headers={"Retry-After": "1"})
        if row["state"] == "committed":
            raise ApiError(409, "the request with this Idempotency-Key took effect but its "
                                "answer was lost; read the resource instead", "")
        await store.take_over(conn, scope, key, attempt, lease)
        return None


@web.middleware
async def idempotency(request: web.Request, handler) -> web.StreamResponse:
    if not applies(request):
        return await handler(request)
    try:
        scope = authenticate(request).user_id
    except ApiError:
        return await handler(request)  # the view answers 401 as usual
    key = request.headers[HEADER]
    if not KEY_RE.match(key):
        raise bad_request("invalid Idempotency-Key: 1 to 255 printable ASCII characters")
    request_hash = fingerprint(request, await request.read())
    attempt = str(uuid.uuid4())
    instead = await _claim(scope, key, request_hash, attempt)
    if instead is not None:
        return instead

    bound = False

    async def bind(conn) -> None:
        nonlocal bound
        if bound:
            return
        if not await store.bind(conn, scope, key, attempt):
            raise ApiError(409, "another attempt with this Idempotency-Key took over", "")
        bound = True

    hook = first_transaction_hook.set(bind)
    try:
        response = await handler(request)
    except ApiError as exc:
        response = exc.response()
    except BaseException:
        first_transaction_hook.reset(hook)
        if not bound:
            async with db.transaction() as conn:
                await store.release(conn, scope, key, attempt)
        raise
    first_transaction_hook.reset(hook)
    body = response.body if isinstance(response, web.Response) else None
    async with db.transaction() as conn:
        if isinstance(body, bytes) and (bound or response.status < 500):
            await store.answer(conn, scope, key, attempt, response.status,
                               response.content_type, body)
        else:  # nothing took effect (or nothing to replay): a retry runs it again
            await store.release(conn, scope, key, attempt)
    return response
