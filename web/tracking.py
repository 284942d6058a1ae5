"""HTTP and WebSocket views of the tracking domain: tracks, routes, trip sharing, chat, and the
live tracking WebSocket with its cross-worker fan-out.

Live fan-out: a fix is processed by whichever worker owns its booking's partition, but the
client's WebSocket may be held by any worker. So every worker tails `tracking.events` and
`chat.events` itself (a groupless consumer over all partitions, from the moment it started) and
pushes each `tracking.updated` / `chat.message_sent` into the local room of its booking.

Ended sessions: the handshake refuses a revoked token like any view (401), and every worker
re-checks its open sockets against the revocation table (tables/sessions.py) every
REVOCATION_CHECK_S, closing those of a banned user or an ended session with close code 4401.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import OrderedDict, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import WSMsgType, web
from aiokafka import AIOKafkaConsumer, TopicPartition
from mode import Service

from core.config import topic_name
from core.db import Connection, Row, db
from core.outbox import emit
from core.security import Principal
from domain.tracking import COMPLETED, MESSAGE_TYPES, path_length_km, round_km
from kilat import app, cfg
from models import events as ev
from stores import tracking as store
from stores.booking import get_booking, is_participant
from tables.routing import routed_get
from tables.sessions import is_revoked
from tables.trips import trip_of, trips
from web.health import tables_ready
from web.http import (
    ApiError,
    Body,
    authenticate,
    bad_request,
    created,
    dumps,
    forbidden,
    format_time,
    not_found,
    ok,
    page_params,
    paginated,
    parse_body,
    parse_uuid,
    path_uuid,
    principal_of,
    require_role,
)
from web.metrics import LIVE_FEED_EVENTS, LIVE_FEED_LAG, LIVE_FEED_LAST_READ, WS_CONNECTIONS

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

SHARE_TTL = timedelta(hours=24)
PING_INTERVAL_S = 54.0      # contract §6: ping every 54 s
WRITE_WAIT_S = 10.0         # a frame not written within 10 s drops the client
SEND_BUFFER = 256           # frames queued per client before it counts as too slow
READ_LIMIT = 512            # client messages are read and discarded
READY_WAIT_S = 10.0         # how long a subscription waits for table recovery
REVOCATION_CHECK_S = 0.25   # how often open sockets are checked against revocations
# Close code for a socket whose session ended or whose user was banned (4000-4999 are for
# applications; 4401 mirrors HTTP 401, so clients know to sign in again).
CLOSE_REVOKED = 4401


# ---------------------------------------------------------------- access

def may_follow(booking: Row, user_id: str, role: str) -> bool:
    """Participant check on a booking row; aiopg returns uuid columns as UUID objects, the
    token carries strings, so ids are compared as text."""
    runner = booking.get("runner_id")
    return is_participant({**booking, "owner_id": str(booking["owner_id"]),
                           "runner_id": str(runner) if runner else None}, user_id, role)


async def participant_booking(conn: Connection, request: web.Request, booking_id: str,
                              missing: ApiError) -> Row:
    """The booking if the caller is its owner, its runner or an admin (DESIGN 6)."""
    principal = authenticate(request)
    booking = await get_booking(conn, booking_id)
    if booking is None:
        raise missing
    if not may_follow(booking, principal.user_id, principal.role):
        raise forbidden()
    return booking


def _booking_id(request: web.Request) -> str:
    return path_uuid(request, "booking_id", "invalid booking ID")


# ---------------------------------------------------------------- DTOs

def waypoint_dto(w: Row) -> dict[str, Any]:
    return {"id": str(w["id"]), "latitude": w["latitude"], "longitude": w["longitude"],
            "speed_kmh": w["speed_kmh"], "heading_degrees": w["heading_degrees"],
            "recorded_at": format_time(w["recorded_at"])}


def track_dto(track: Row, points: list[Row]) -> dict[str, Any]:
    if track["status"] == COMPLETED:
        distance = float(track["total_distance_km"])
    else:  # live figure: the same rule as completion, over what is stored so far
        distance = round_km(path_length_km((w["latitude"], w["longitude"]) for w in points))
    dto: dict[str, Any] = {
        "id": str(track["id"]), "booking_id": str(track["booking_id"]),
        "runner_id": str(track["runner_id"]), "status": track["status"],
        "total_distance_km": distance, "started_at": format_time(track["started_at"]),
    }
    if track["completed_at"] is not None:
        dto["completed_at"] = format_time(track["completed_at"])
    dto["waypoints"] = [waypoint_dto(w) for w in points]
    return dto


def chat_dto(m: Row) -> dict[str, Any]:
    return {"id": str(m["id"]), "booking_id": str(m["booking_id"]),
            "sender_id": str(m["sender_id"]), "sender_role": m["sender_role"],
            "message_type": m["message_type"], "content": m["content"],
            "created_at": format_time(m["created_at"])}


# ---------------------------------------------------------------- tracks

# Routed by web/share_page.py, which answers browsers with the live page.
async def shared_tracking(request: web.Request) -> web.Response:
    """Public read of a shared trip (no auth: the token is the capability)."""
    token = request.match_info["token"]
    async with db.connect() as conn:
        share = await store.get_share(conn, token)
        if share is None:
            raise ApiError(404, "share link not found")
        if share["expires_at"] <= datetime.now(UTC):
            raise ApiError(404, "share link has expired")
        track = await store.get_track(conn, str(share["booking_id"]))
        if track is None:
            raise ApiError(404, "tracking data not found")
        points = await store.list_waypoints(conn, track["id"])
    return ok({
        "booking_id": str(share["booking_id"]), "status": track["status"],
        "waypoints": [{k: v for k, v in waypoint_dto(w).items() if k != "id"} for w in points],
        "expires_at": format_time(share["expires_at"]),
    })


async def visible_track(conn: Connection, request: web.Request) -> Row:
    """The booking's track, for its participants only (404 `tracking not found` otherwise)."""
    authenticate(request)
    booking_id = _booking_id(request)
    missing = not_found("tracking", booking_id)
    await participant_booking(conn, request, booking_id, missing)
    track = await store.get_track(conn, booking_id)
    if track is None:
        raise missing
    return track


@routes.get("/api/v1/tracking/{booking_id}")
async def get_tracking(request: web.Request) -> web.Response:
    async with db.connect() as conn:
        track = await visible_track(conn, request)
        points = await store.list_waypoints(conn, track["id"])
    return ok(track_dto(track, points))


@routes.get("/api/v1/tracking/{booking_id}/route")
async def get_route(request: web.Request) -> web.Response:
    async with db.connect() as conn:
        route = await store.route_geojson(conn, (await visible_track(conn, request))["id"])
    return web.Response(text=dumps(route), content_type="application/geo+json")


@routes.post("/api/v1/tracking/{booking_id}/share")
async def share_trip(request: web.Request) -> web.Response:
    principal = authenticate(request)
    booking_id = _booking_id(request)
    async with db.transaction() as conn:
        await participant_booking(conn, request, booking_id, not_found("booking", booking_id))
        token = secrets.token_hex(16)
        share = await store.create_share(conn, booking_id=booking_id,
                                         created_by=principal.user_id, token=token,
                                         expires_at=datetime.now(UTC) + SHARE_TTL)
    return created({
        "id": str(share["id"]), "booking_id": booking_id, "share_token": token,
        "share_url": f"/api/v1/tracking/shared/{token}",
        "expires_at": format_time(share["expires_at"]),
    })


@routes.get("/api/v1/admin/tracking/{booking_id}/live")
async def live_trip(request: web.Request) -> web.StreamResponse:
    """Ops view of the live trip entry (table), served by the worker that owns it."""
    require_role(request, "admin")
    booking_id = _booking_id(request)

    async def local() -> web.Response:
        trip = trip_of(booking_id)
        if trip is None:
            raise not_found("tracking", booking_id)
        return ok(trip)

    return await routed_get(request, trips.name, booking_id, local)


# ---------------------------------------------------------------- chat

class SendMessageRequest(Body):
    message_type: str
    content: str


@routes.post("/api/v1/chat/{booking_id}/messages")
async def send_message(request: web.Request) -> web.Response:
    principal = authenticate(request)
    booking_id = _booking_id(request)
    body = await parse_body(request, SendMessageRequest)
    if body.message_type not in MESSAGE_TYPES:
        raise bad_request("invalid message_type: must be one of text, image, quick_reply")
    if not body.content:
        raise bad_request("Key: 'SendMessageRequest.Content' Error:Field validation for "
                          "'Content' failed on the 'required' tag")
    if len(body.content) > 4000:
        raise bad_request("Key: 'SendMessageRequest.Content' Error:Field validation for "
                          "'Content' failed on the 'max' tag")
    async with db.transaction() as conn:
        await participant_booking(conn, request, booking_id, not_found("booking", booking_id))
        msg = await store.add_chat_message(
            conn, booking_id=booking_id, sender_id=principal.user_id,
            sender_role=principal.role, message_type=body.message_type, content=body.content)
        dto = chat_dto(msg)
        # Every worker's live feed turns this into the flat `chat_message` frame.
        await emit(conn, ev.CHAT_EVENTS, booking_id, "service-tracking", "chat.message_sent", {
            "message_id": dto["id"], "booking_id": booking_id, "sender_id": dto["sender_id"],
            "sender_role": dto["sender_role"], "message_type": dto["message_type"],
            "content": dto["content"], "created_at": dto["created_at"],
        })
    return created(dto)


@routes.get("/api/v1/chat/{booking_id}/messages")
async def list_messages(request: web.Request) -> web.Response:
    authenticate(request)
    booking_id = _booking_id(request)
    page, limit = page_params(request, default_limit=50, max_limit=100)
    async with db.connect() as conn:
        await participant_booking(conn, request, booking_id, not_found("booking", booking_id))
        rows, total = await store.list_chat_messages(conn, booking_id, page=page, limit=limit)
    return paginated([chat_dto(m) for m in rows], total, page, limit)


# ---------------------------------------------------------------- live rooms

class Subscriber:
    """One WebSocket client: a bounded queue of frames and the task writing them."""

    def __init__(self, ws: web.WebSocketResponse, booking_id: str,
                 principal: Principal | None = None) -> None:
        self.ws = ws
        self.booking_id = booking_id
        self.principal = principal
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=SEND_BUFFER)
        self.writer: asyncio.Task | None = None


rooms: dict[str, set[Subscriber]] = defaultdict(set)


def join(sub: Subscriber) -> None:
    rooms[sub.booking_id].add(sub)
    WS_CONNECTIONS.inc()


def leave(sub: Subscriber) -> None:
    room = rooms.get(sub.booking_id)
    if room is not None and sub in room:
        room.discard(sub)
        WS_CONNECTIONS.dec()
        if not room:
            rooms.pop(sub.booking_id, None)


def _drop(sub: Subscriber, reason: str, code: int = 1008) -> None:
    log.info("dropping WebSocket client of booking %s: %s", sub.booking_id, reason)
    leave(sub)
    if sub.writer is not None:
        sub.writer.cancel()
    asyncio.ensure_future(sub.ws.close(code=code, message=reason.encode()))


def close_revoked() -> int:
    """Close this worker's sockets whose token is no longer valid; returns how many."""
    closed = 0
    for sub in [sub for room in rooms.values() for sub in room]:
        if sub.principal is not None and is_revoked(sub.principal):
            _drop(sub, "session ended", CLOSE_REVOKED)
            closed += 1
    return closed


def broadcast(booking_id: str, frame: str) -> int:
    """Queue one frame (one JSON message) for every client of the booking on this worker."""
    delivered = 0
    for sub in list(rooms.get(booking_id, ())):
        try:
            sub.queue.put_nowait(frame)
            delivered += 1
        except asyncio.QueueFull:
            _drop(sub, "slow consumer")
    return delivered


async def _write(sub: Subscriber) -> None:
    # One JSON message per frame: clients JSON.parse each frame (no newline batching).
    while True:
        frame = await sub.queue.get()
        try:
            await asyncio.wait_for(sub.ws.send_str(frame), WRITE_WAIT_S)
        except (TimeoutError, ConnectionError, RuntimeError):
            _drop(sub, "write failed")
            return


def frame_for(event: dict[str, Any]) -> tuple[str, str] | None:
    """(booking id, frame text) for an event the WebSocket relays, else None."""
    data = event.get("data")
    if not isinstance(data, dict) or not data.get("booking_id"):
        return None
    booking_id = str(data["booking_id"])
    if event.get("type") == "tracking.updated":
        location = {
            "booking_id": booking_id, "runner_id": data.get("runner_id"),
            "latitude": data.get("latitude"), "longitude": data.get("longitude"),
            "speed_kmh": data.get("speed_kmh", 0.0),
            "heading_degrees": data.get("heading_degrees", 0.0),
            "timestamp": data.get("timestamp") or data.get("occurred_at"),
        }
        # The ETA to the current leg's target, when the trip knows its targets.
        for key in ("eta_minutes", "distance_remaining_km"):
            if key in data:
                location[key] = data[key]
        # The contract's `{"type","data"}` frame, plus the same fields flat: the web app parses
        # the frame itself as the location (it never unwraps `data`).
        return booking_id, json.dumps({"type": "location_update", "data": location, **location},
                                      separators=(",", ":"))
    if event.get("type") == "chat.message_sent":
        return booking_id, json.dumps({
            "type": "chat_message", "booking_id": booking_id,
            "message_id": data.get("message_id"), "sender_id": data.get("sender_id"),
            "sender_role": data.get("sender_role"), "message_type": data.get("message_type"),
            "content": data.get("content"), "created_at": data.get("created_at"),
        }, separators=(",", ":"))
    return None


@app.service
class LiveFeed(Service):
    """Tails `tracking.events` and `chat.events` on every worker (no consumer group: each
    worker reads every partition) and feeds the local rooms. Partitions are re-checked
    periodically; a partition found later is read from the time this worker started."""

    refresh_every_s = 5.0
    remember = 20_000  # recent event ids: a re-published update is not framed twice

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.consumer: AIOKafkaConsumer | None = None
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.started_ms = 0
        self.topics = (topic_name(ev.TRACKING_EVENTS), topic_name(ev.CHAT_EVENTS))
        # Next offset to read per partition: with the broker's high-water marks, how far
        # behind the feed is (an alert fires when it is behind and has stopped reading).
        self.read_upto: dict[TopicPartition, int] = {}
        LIVE_FEED_LAG.set_function(self.lag)

    def lag(self) -> float:
        """Events on the broker (as of the last fetch) that the feed has not read."""
        consumer = self.consumer
        if consumer is None:
            return 0.0
        behind = 0
        for tp, upto in self.read_upto.items():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                behind += max(highwater - upto, 0)
        return float(behind)

    async def on_start(self) -> None:
        self.started_ms = int(time.time() * 1000)
        LIVE_FEED_LAST_READ.set_to_current_time()
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=[h.strip() for h in cfg.kafka_brokers.split(",") if h.strip()],
            group_id=None, enable_auto_commit=False, fetch_max_wait_ms=100,
            client_id=f"{cfg.app_id}-live-feed")
        await self.consumer.start()

    async def on_stop(self) -> None:
        # Open WebSockets would hold the web server's shutdown; clients reconnect elsewhere.
        subs = [sub for room in rooms.values() for sub in room]
        for sub in subs:
            leave(sub)
            if sub.writer is not None:
                sub.writer.cancel()
        await asyncio.gather(*(sub.ws.close(code=1001, message=b"worker stopping")
                               for sub in subs), return_exceptions=True)
        if self.consumer is not None:
            await self.consumer.stop()

    async def refresh(self) -> None:
        """Assign every partition of the two topics, keeping positions already reached."""
        consumer = self.consumer
        assert consumer is not None
        cluster = await consumer._client.fetch_all_metadata()  # noqa: SLF001 - fresh metadata
        wanted = {TopicPartition(t, p) for t in self.topics
                  for p in (cluster.partitions_for_topic(t) or ())}
        current = consumer.assignment()
        if not wanted or wanted <= current:
            return
        positions = {tp: await consumer.position(tp) for tp in current}
        consumer.assign(list(wanted))
        for tp, offset in positions.items():
            consumer.seek(tp, offset)
        new = [tp for tp in wanted if tp not in positions]
        found = await consumer.offsets_for_times({tp: self.started_ms for tp in new})
        ends = await consumer.end_offsets(new)
        for tp in new:
            at = found.get(tp)
            self.read_upto[tp] = at.offset if at is not None else ends[tp]
            consumer.seek(tp, self.read_upto[tp])

    @Service.task
    async def _tail(self) -> None:
        last_refresh = 0.0
        while not self.should_stop:
            try:
                if time.monotonic() - last_refresh >= self.refresh_every_s:
                    last_refresh = time.monotonic()
                    await self.refresh()
                assert self.consumer is not None
                if not self.consumer.assignment():
                    await self.sleep(0.5)
                    continue
                batches = await self.consumer.getmany(timeout_ms=200, max_records=1000)
                for tp, records in batches.items():
                    for rec in records:
                        self.dispatch(rec.value)
                    if records:
                        self.read_upto[tp] = records[-1].offset + 1
                        LIVE_FEED_EVENTS.inc(len(records))
                        LIVE_FEED_LAST_READ.set_to_current_time()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("live feed failed; retrying")
                await self.sleep(1.0)

    @Service.timer(REVOCATION_CHECK_S)
    async def _close_revoked(self) -> None:
        # Polling the local table is cheap (one lookup per open socket) and catches every
        # way a revocation arrives (this worker's agent or another worker's changelog).
        close_revoked()

    def dispatch(self, raw: bytes | None) -> None:
        try:
            event = json.loads(raw or b"")
        except ValueError:
            return
        if not isinstance(event, dict) or (found := frame_for(event)) is None:
            return
        # After a worker failover the new owner may publish an update again (same id).
        event_id = str(event.get("id", ""))
        if event_id in self.seen:
            return
        self.seen[event_id] = None
        if len(self.seen) > self.remember:
            self.seen.popitem(last=False)
        broadcast(*found)


# ---------------------------------------------------------------- WebSocket

async def _wait_tables_ready() -> bool:
    deadline = time.monotonic() + READY_WAIT_S
    while not tables_ready():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.1)
    return True


@routes.get("/ws/tracking/{booking_id}")
async def tracking_ws(request: web.Request) -> web.StreamResponse:
    """Live location and chat frames of one booking, for its participants."""
    token = request.query.get("token", "")
    if not token:
        raise ApiError(401, "token query parameter is required", enveloped=False)
    principal = principal_of(token)  # 401 for a bad, expired or revoked token
    try:
        booking_id = parse_uuid(request.match_info.get("booking_id", ""), "")
    except ApiError:
        raise ApiError(400, "invalid booking ID format", enveloped=False) from None
    async with db.connect() as conn:
        booking = await get_booking(conn, booking_id)
    if booking is None:
        raise ApiError(404, "booking not found", enveloped=False)
    if not may_follow(booking, principal.user_id, principal.role):
        raise ApiError(403, "forbidden", enveloped=False)
    if not await _wait_tables_ready():
        raise ApiError(503, "service unavailable", enveloped=False,
                       headers={"Retry-After": "5"})
    ws = web.WebSocketResponse(heartbeat=PING_INTERVAL_S, max_msg_size=READ_LIMIT)
    if not ws.can_prepare(request).ok:
        raise ApiError(400, "websocket upgrade required", enveloped=False)
    await ws.prepare(request)
    sub = Subscriber(ws, booking_id, principal)
    join(sub)
    sub.writer = asyncio.create_task(_write(sub))
    try:
        async for msg in ws:  # server → client only; client messages are discarded
            if msg.type == WSMsgType.ERROR:
                break
    finally:
        leave(sub)
        sub.writer.cancel()
    return ws
