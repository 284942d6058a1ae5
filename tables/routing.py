"""Serve a table entry from whichever worker owns its partition.

Faust's `table_route` only decorates Faust views; our views are plain aiohttp handlers, so this
helper does the same: look up the owner of the key, answer locally if it is us, otherwise relay
the GET to the owning worker. While nobody can say who owns the key (the worker has no metadata
for the changelog topic yet, or the group is rebalancing) or the owner does not answer, the
caller gets a 503 to retry, never a 500 or an answer from a worker that does not hold the data.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from kilat import app

RELAY_TIMEOUT_S = 5.0


class OwnerUnknown(Exception):
    """The worker that holds a table key cannot be determined or reached right now."""


def owner_url(table_name: str, key: str, router: Any = None) -> str:
    """Base URL of the worker holding `key` in `table_name`; OwnerUnknown while unknown."""
    router = router if router is not None else app.router
    try:
        return str(router.key_store(table_name, key)).rstrip("/")
    except KeyError as exc:  # no host has the partition (assignment in progress)
        raise OwnerUnknown(f"no worker holds {table_name} key yet") from exc
    except TypeError as exc:  # Faust has no partition metadata for the changelog topic yet
        raise OwnerUnknown(f"no metadata for {table_name} yet") from exc


async def routed_get(request: web.Request, table_name: str, key: str,
                     local: Callable[[], Awaitable[web.StreamResponse]], *,
                     router: Any = None, me: str | None = None) -> web.StreamResponse:
    if request.headers.get("X-Kilat-Routed"):
        return await local()  # relayed to us by the worker that thinks we own it
    dest = owner_url(table_name, key, router)
    me = me if me is not None else str(app.conf.canonical_url).rstrip("/")
    if dest == me:
        return await local()
    headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "accept")}
    headers["X-Kilat-Routed"] = "1"
    try:
        async with aiohttp.ClientSession() as session, session.get(
                dest + request.path_qs, headers=headers,
                timeout=aiohttp.ClientTimeout(total=RELAY_TIMEOUT_S)) as resp:
            body = await resp.read()
            return web.Response(status=resp.status, body=body, content_type=resp.content_type)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise OwnerUnknown(f"the worker holding {table_name} did not answer ({exc!r})") from exc
