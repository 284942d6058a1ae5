"""Prometheus metrics of a worker, served at `GET /metrics`."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

HTTP_LATENCY = Histogram(
    "kilat_http_request_duration_seconds", "HTTP request latency",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENTS_PROCESSED = Counter(
    "kilat_events_processed_total", "Events handled by agents", ["consumer", "type", "outcome"])
GAP_MESSAGES_RECOVERED = Counter(
    "kilat_gap_messages_recovered_total",
    "Messages Faust skipped around a rebalance that an agent read back from Kafka", ["consumer"])
# Money sagas (streams/sagas.py). Every worker holds every saga, so take the max of the gauges
# across workers, not the sum.
SAGAS_IN_FLIGHT = Gauge("kilat_sagas_in_flight",
                        "Bookings whose release or refund is owed and not yet seen settled")
SAGAS_OVERDUE = Gauge("kilat_sagas_overdue",
                      "Sagas still owed past SAGA_STEP_TIMEOUT_S at the reconciler's last look",
                      ["kind"])
SAGAS_DRIVEN = Counter("kilat_sagas_driven_total",
                       "Overdue sagas the reconciler drove forward, by what it did",
                       ["step", "kind", "outcome"])
SAGA_DEAD_LETTERS = Counter(
    "kilat_saga_dead_letters_total",
    "ALERT: a money saga's event was dead-lettered (its step may be owed; the reconciler "
    "retries it, but the cause needs a look)", ["consumer", "type"])
WS_CONNECTIONS = Gauge("kilat_websocket_connections", "Open tracking WebSocket connections")
TABLE_SIZE = Gauge("kilat_table_entries", "Entries in a Faust table held by this worker", ["table"])
# What the alert rules in docker/prometheus/ watch besides lag, latency and 5xx answers.
DEAD_LETTERS = Counter(
    "kilat_dead_letters_total", "Messages published to the dead-letter topic", ["consumer"])
SINK_BACKLOG = Gauge(
    "kilat_sink_pending_rows", "Rows queued in a database sink, not yet committed", ["sink"])
TABLES_RECOVERING = Gauge(
    "kilat_tables_recovering", "1 while this worker's tables are recovering or rebalancing")
LIVE_FEED_EVENTS = Counter(
    "kilat_live_feed_events_total", "Tracking and chat events the live feed read")
LIVE_FEED_LAST_READ = Gauge(
    "kilat_live_feed_last_read_timestamp_seconds", "When the live feed last read an event")
LIVE_FEED_LAG = Gauge(
    "kilat_live_feed_lag_messages",
    "Tracking and chat events on the broker the live feed has not read yet (last fetch)")

routes = web.RouteTableDef()


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_LATENCY.labels(method, route, str(status)).observe(seconds)


@routes.get("/metrics")
async def metrics(_: web.Request) -> web.Response:
    resp = web.Response(body=generate_latest())
    resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return resp
