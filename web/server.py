"""Mounts Kilat's views and middlewares on the worker's aiohttp application.

Faust's web server (aiohttp driver) is the worker's HTTP server: `faust -A kilat worker
--web-port 6066` serves the whole API on that port.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from core.config import settings
from core.db import DatabaseUnavailable
from core.headers import came_over_https, edge_headers
from kilat import app
from tables.routing import OwnerUnknown
from web import (
    booking,
    health,
    identity,
    metrics,
    notification,
    payment,
    review,
    runner,
    share_page,
    tracking,
)
from web.http import ApiError, domain_errors, json_response
from web.idempotency import idempotency
from web.metrics import observe_request

log = logging.getLogger("kilat.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]



def _nul_in_url(request: web.Request) -> bool:
    return "\x00" in request.path or any(
        "\x00" in k or "\x00" in v for k, v in request.query.items())


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, metrics, and the error → envelope mapping."""
    request_id = request.headers.get("X-Request-ID") or str(uuid.uuid4())
    request["request_id"] = request_id
    started = time.perf_counter()
    try:
        if _nul_in_url(request):
            # Path parameters and query values reach SQL, and PostgreSQL text cannot hold NUL.
            raise ApiError(400, "invalid request: NUL character in URL")
        response = await handler(request)
    except ApiError as exc:
        response = exc.response()
    except web.HTTPException as exc:
        if exc.status in (404, 405):  # Gin answers a known path with another method 404 too
            response = web.Response(status=404, text="404 page not found")
        elif exc.status == 413:
            response = json_response(
                {"success": False, "error": "request body too large"}, 413)
        elif exc.status >= 400:
            response = json_response({"success": False, "error": exc.reason}, exc.status)
        else:
            raise
    except DatabaseUnavailable as exc:
        log.warning("database unavailable: %s", exc)
        response = json_response(
            {"success": False, "error": "service unavailable",
             "detail": "database unavailable"}, 503, headers={"Retry-After": "5"})
    except OwnerUnknown as exc:
        log.info("live data not reachable yet: %s", exc)
        response = json_response(
            {"success": False, "error": "service unavailable",
             "detail": "live data is moving between workers; retry shortly"}, 503,
            headers={"Retry-After": "1"})
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        response = json_response({"success": False, "error": "internal server error"}, 500)
    if not response.prepared:
        response.headers["X-Request-ID"] = request_id
    route = request.match_info.route.resource
    observe_request(request.method, route.canonical if route else "unmatched",
                    response.status, time.perf_counter() - started)
    return response


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Edge headers on every response, streamed and WebSocket ones included (a signal rather
    than the middleware, which only sees responses not yet sent)."""
    secure = came_over_https(request.scheme, request.remote, request.headers,
                             settings().trusted_proxies)
    for name, value in edge_headers(request.path, secure).items():
        if name in ("Server", "Cache-Control"):
            response.headers[name] = value
        else:
            response.headers.setdefault(name, value)
    if not secure:
        response.headers.pop("Strict-Transport-Security", None)


_web_app = app.web.web_app
_web_app.middlewares.append(request_context)
_web_app.middlewares.append(idempotency)  # inside request_context: it sees views' errors
_web_app.middlewares.append(domain_errors)  # innermost: use cases' refusals become ApiErrors
_web_app.on_response_prepare.append(security_headers)
for _module in (health, metrics, identity, booking, payment, runner, tracking, share_page,
                notification, review):
    _web_app.router.add_routes(_module.routes)
