"""The live trip page behind a share link, and its public read-only WebSocket.

`GET /api/v1/tracking/shared/{token}` answers a browser (`Accept` ranking `text/html` above
JSON) with an HTML page: the pet's name and trip status, the last fix time, the ETA, the route
so far as text, and a Leaflet map (Leaflet served by us from the Debian package, tiles from the
configurable `SHARE_TILE_URL`). API clients keep the contract's JSON (web/tracking.py).

`/ws/tracking/shared/{token}` needs no sign-in: the unexpired token is the capability, and it
only ever reads. The socket joins the booking's room through the same join/leave helpers as the
owner's socket, so it gets the same `location_update` frames from the LiveFeed; its own writer
passes on only their public fields (never chat, ids or contacts). Trip status changes (picked
up, delivered, cancelled) and the link's expiry are not frames of the room: every worker
re-reads the status of the links its viewers hold every `SHARE_STATUS_POLL_S` (one query for
all of them) and sends a `trip_status` frame when it changes; an ended trip or an expired link
gets its last frame and the socket is closed (1000).
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from string import Template
from typing import Any

from aiohttp import WSMsgType, web

from core.config import settings
from core.db import Row, db
from domain import share as rules
from kilat import app
from stores import share as store
from stores import tracking as tracking_store
from web import tracking
from web.http import ApiError, format_time

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

ASSETS = "/api/v1/tracking/assets"
LEAFLET_ASSETS = f"{ASSETS}/leaflet"
PAGE_ASSETS = f"{ASSETS}/page"
PAGE_DIR = Path(__file__).resolve().parent.parent / "templates" / "share"
CLOSE_ENDED = 1000
# Queued after a viewer's last frame: its writer closes the socket once the frames before it
# are sent (frames are JSON objects, so no frame starts with it).
CLOSE_MARK = "close:"
OWN_FRAMES = ("trip_status", "link_expired")  # sent by this module, not the room's feed


def page_dir() -> Path:
    """The page's templates and assets: the source tree's, else `./templates/share` (an
    installed package runs from the deployment directory that holds the templates)."""
    for folder in (PAGE_DIR, Path.cwd() / "templates" / "share"):
        if folder.is_dir():
            return folder
    return PAGE_DIR


@lru_cache(maxsize=4)
def _template(name: str) -> Template:
    return Template((page_dir() / name).read_text(encoding="utf-8"))


def leaflet_script() -> str | None:
    """Leaflet's script in LEAFLET_DIR: Debian's minified build, else the npm package's
    `dist/leaflet.js` (already minified); None when Leaflet is not installed."""
    for name in ("leaflet.min.js", "leaflet.js"):
        if (Path(settings().leaflet_dir) / name).is_file():
            return name
    return None


def leaflet_available() -> bool:
    return leaflet_script() is not None


def _page(status: int, body: str, tile_url: str = "") -> web.Response:
    response = web.Response(status=status, text=body, content_type="text/html",
                            charset="utf-8")
    response.headers["Content-Security-Policy"] = rules.content_security_policy(tile_url)
    response.headers["Cache-Control"] = "no-store"  # live data; the token is in the URL
    response.headers["Referrer-Policy"] = "no-referrer"  # nor sent to the tile server
    response.headers["Vary"] = "Accept"
    return response


def gone_page(kind: str) -> web.Response:
    """A clear page for a link that never existed (404) or has expired (410)."""
    if kind == rules.EXPIRED:
        status, title = 410, "This trip link has expired"
        text = ("Trip links work for 24 hours. Ask the person who shared it for a new link.")
    else:
        status, title = 404, "This trip link does not exist"
        text = "Check that the whole link was copied, or ask for a new one."
    body = _template("gone.html").substitute(
        title=html.escape(title), text=html.escape(text), css=f"{PAGE_ASSETS}/share.css")
    return _page(status, body)


def _script_json(value: Any) -> str:
    # Inside <script type="application/json">: no `</script>` or `<!--` can end it early.
    return json.dumps(value, separators=(",", ":")).replace("<", "\\u003c")


async def live_page(share: Row) -> web.Response:
    cfg = settings()
    pet = rules.pet_name(share["pet_spec"])
    points: list[Row] = []
    if share["track_id"] is not None:
        async with db.connect() as conn:
            points = await tracking_store.list_waypoints(conn, share["track_id"])
    state = {
        **rules.status_frame(share["booking_status"], share["track_status"], pet),
        "pet_name": pet, "expires_at": format_time(share["expires_at"]),
        "waypoints": [{"latitude": w["latitude"], "longitude": w["longitude"],
                       "timestamp": format_time(w["recorded_at"])} for w in points],
    }
    map_on = leaflet_available() and bool(cfg.share_tile_url)
    token = share["share_token"]
    body = _template("trip.html").substitute(
        pet=html.escape(pet), status=html.escape(state["text"]),
        expires=html.escape(state["expires_at"]),
        state=_script_json(state),
        ws=html.escape(f"/ws/tracking/shared/{token}"),
        json_url=html.escape(f"/api/v1/tracking/shared/{token}"),
        tiles=html.escape(cfg.share_tile_url if map_on else ""),
        attribution=html.escape(cfg.share_tile_attribution),
        leaflet_css=(f'<link rel="stylesheet" href="{LEAFLET_ASSETS}/leaflet.css">'
                     if map_on else ""),
        leaflet_js=(f'<script src="{LEAFLET_ASSETS}/{leaflet_script()}" defer></script>'
                    if map_on else ""),
        css=f"{PAGE_ASSETS}/share.css", js=f"{PAGE_ASSETS}/share.js")
    return _page(200, body, cfg.share_tile_url if map_on else "")


@routes.get("/api/v1/tracking/shared/{token}")
async def shared_trip(request: web.Request) -> web.StreamResponse:
    """Public read of a shared trip: a live page for browsers, the contract's JSON otherwise.

    No auth: the token is the capability. `Accept` ranking `text/html` above JSON → HTML."""
    if not rules.prefers_html(request.headers.get("Accept", "")):
        try:
            response = await tracking.shared_tracking(request)
        except ApiError as exc:
            response = exc.response()
        response.headers["Vary"] = "Accept"  # the same URL also answers with HTML
        return response
    async with db.connect() as conn:
        share = await store.share_state(conn, request.match_info["token"])
    kind = rules.page_kind(share, datetime.now(UTC))
    if share is None or kind != rules.LIVE:
        return gone_page(kind)
    return await live_page(share)


# ---------------------------------------------------------------- public WebSocket

class Viewer(tracking.Subscriber):
    """A share-page socket: no principal (the revocation check skips it), its token, and the
    last status it was sent."""

    def __init__(self, ws: web.WebSocketResponse, booking_id: str, token: str, pet: str) -> None:
        super().__init__(ws, booking_id, None)
        self.token = token
        self.pet = pet
        self.last_status: tuple[str | None, str | None] | None = None


viewers: set[Viewer] = set()


def _dumps(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"))


def send_status(viewer: Viewer, booking_status: str | None, track_status: str | None) -> bool:
    """Queue a `trip_status` frame if the status changed; whether the trip has ended."""
    key = (booking_status, track_status)
    if key != viewer.last_status:
        viewer.last_status = key
        _queue(viewer, _dumps(rules.status_frame(booking_status, track_status, viewer.pet)))
    return rules.trip_ended(booking_status, track_status)


def _queue(viewer: Viewer, frame: str) -> None:
    try:
        viewer.queue.put_nowait(frame)
    except asyncio.QueueFull:
        _close(viewer, 1008, "slow consumer")


def _close(viewer: Viewer, code: int, reason: str) -> None:
    tracking.leave(viewer)
    viewers.discard(viewer)
    if viewer.writer is not None:
        viewer.writer.cancel()
    asyncio.ensure_future(viewer.ws.close(code=code, message=reason.encode()))


def finish(viewer: Viewer, reason: str) -> None:
    """Send the frames queued so far, then close: the page shows the end, not a lost link."""
    tracking.leave(viewer)  # no more room frames
    viewers.discard(viewer)
    try:
        viewer.queue.put_nowait(CLOSE_MARK + reason)
    except asyncio.QueueFull:
        _close(viewer, CLOSE_ENDED, reason)


async def _write_public(viewer: Viewer) -> None:
    """The owner's writer (web/tracking.py), with the room's frames narrowed to what the
    public may see; status frames pass as they are."""
    while True:
        frame = await viewer.queue.get()
        if frame.startswith(CLOSE_MARK):
            await viewer.ws.close(code=CLOSE_ENDED, message=frame[len(CLOSE_MARK):].encode())
            return
        try:
            parsed = json.loads(frame)
        except ValueError:
            continue
        if parsed.get("type") not in OWN_FRAMES:
            public = rules.public_location(parsed)
            if public is None:
                continue  # chat and anything else stays with the participants
            frame = _dumps(public)
        try:
            await asyncio.wait_for(viewer.ws.send_str(frame), tracking.WRITE_WAIT_S)
        except (TimeoutError, ConnectionError, RuntimeError):
            _close(viewer, 1008, "write failed")
            return


@routes.get("/ws/tracking/shared/{token}")
async def shared_trip_ws(request: web.Request) -> web.StreamResponse:
    """Live frames of a shared trip for anyone holding the link (read-only, no sign-in)."""
    async with db.connect() as conn:
        share = await store.share_state(conn, request.match_info["token"])
    kind = rules.page_kind(share, datetime.now(UTC))
    if share is None or kind == rules.UNKNOWN:
        raise ApiError(404, "share link not found", enveloped=False)
    if kind == rules.EXPIRED:
        raise ApiError(410, "share link has expired", enveloped=False)
    ws = web.WebSocketResponse(heartbeat=tracking.PING_INTERVAL_S,
                               max_msg_size=tracking.READ_LIMIT)
    if not ws.can_prepare(request).ok:
        raise ApiError(400, "websocket upgrade required", enveloped=False)
    await ws.prepare(request)
    viewer = Viewer(ws, str(share["booking_id"]), share["share_token"],
                    rules.pet_name(share["pet_spec"]))
    tracking.join(viewer)
    viewers.add(viewer)
    viewer.writer = asyncio.create_task(_write_public(viewer))
    if send_status(viewer, share["booking_status"], share["track_status"]):
        finish(viewer, "trip ended")
    try:
        async for msg in ws:  # server → client only; client messages are discarded
            if msg.type == WSMsgType.ERROR:
                break
    finally:
        tracking.leave(viewer)
        viewers.discard(viewer)
        if not viewer.writer.done():
            viewer.writer.cancel()
    return ws


async def refresh_viewers() -> int:
    """Re-read the links this worker's viewers hold: status changes, ends and expiries.
    Returns how many sockets it finished."""
    if not viewers:
        return 0
    current = list(viewers)
    async with db.connect() as conn:
        rows = await store.share_states(conn, sorted({v.token for v in current}))
    by_token = {r["share_token"]: r for r in rows}
    now = datetime.now(UTC)
    finished = 0
    for viewer in current:
        if viewer not in viewers:
            continue
        row = by_token.get(viewer.token)
        if rules.page_kind(row, now) != rules.LIVE:
            _queue(viewer, _dumps({"type": "link_expired",
                                   "text": "This trip link has expired."}))
            finish(viewer, "link expired")
            finished += 1
        elif send_status(viewer, row["booking_status"], row["track_status"]):
            finish(viewer, "trip ended")
            finished += 1
    return finished


@app.timer(settings().share_status_poll_s, name="kilat.share-page-status")
async def _poll_viewers() -> None:
    try:
        await refresh_viewers()
    except Exception:  # a database hiccup must not stop the timer; the next tick retries
        log.exception("share page status poll failed")


# Leaflet from the Debian package (scripts/bootstrap.sh installs libjs-leaflet), the page's
# own script and style from templates/share/static. Without Leaflet the page is text only.
if leaflet_available():
    routes.static(LEAFLET_ASSETS, settings().leaflet_dir)
routes.static(PAGE_ASSETS, page_dir() / "static")
