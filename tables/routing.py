"""Serve a table entry from whichever worker owns its partition.

Faust's `table_route` only decorates Faust views; our views are plain aiohttp handlers, so this
helper does the same: look up the owner of the key, answer locally if it is us, otherwise relay
the GET to the owning worker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from kilat import app


def owner_url(table_name: str, key: str) -> str | None:
    """Base URL of the worker holding `key` in `table_name`; None if unknown (rebalancing)."""
    try:
        return str(app.router.key_store(table_name, key)).rstrip("/")
    except KeyError:
        return None


async def routed_get(request: web.Request, table_name: str, key: str,
                     local: Callable[[], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    dest = owner_url(table_name, key)
    me = str(app.conf.canonical_url).rstrip("/")
    if dest is None or dest == me or request.headers.get("X-Kilat-Routed"):
        return await local()
    headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "accept")}
    headers["X-Kilat-Routed"] = "1"
    async with aiohttp.ClientSession() as session, session.get(
            dest + request.path_qs, headers=headers,
            timeout=aiohttp.ClientTimeout(total=5)) as resp:
        body = await resp.read()
        return web.Response(status=resp.status, body=body,
                            content_type=resp.content_type)
