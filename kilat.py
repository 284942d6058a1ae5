"""The Kilat Faust application.

Run workers with `faust -A kilat worker` (or `kilat worker`). This module holds the app, its
configuration and the topic catalogue; agents live in `streams/`, tables in `tables/`, HTTP and
WebSocket views in `web/`. They are imported at the bottom so that they can import `app` and the
topics from here.
"""

from __future__ import annotations

import faust

from core.config import settings, topic_name
from core.logs import logging_config
from core.replication import broker_urls, replicated_topic_class
from models import events as ev

cfg = settings()

app = faust.App(
    cfg.app_id,
    **({"canonical_url": cfg.canonical_url} if cfg.canonical_url else {}),
    broker=broker_urls(cfg.kafka_brokers),
    store="rocksdb://",
    datadir=cfg.data_dir,
    autodiscover=False,
    origin="kilat",
    topic_partitions=cfg.topic_partitions,
    # Every topic, changelogs included, replicated as configured (core/replication.py).
    topic_replication_factor=cfg.topic_replication_factor,
    Topic=replicated_topic_class(cfg.topic_replication_factor, cfg.topic_min_insync_replicas),
    topic_allow_declare=True,
    web_port=cfg.web_port,
    web_host=cfg.web_host,
    web_bind=cfg.web_bind,
    # Live positions are private: never expose tables over Faust's own web routes.
    web_tables_enabled=False,
    web_graph_enabled=False,
    web_router_enabled=False,
    web_application_options={"client_max_size": 1024 * 1024},
    producer_acks=-1,  # with idempotence: the transport of broker_urls
    broker_commit_every=100,
    broker_commit_interval=1.0,
    stream_wait_empty=False,
    consumer_auto_offset_reset="earliest",
    table_standby_replicas=1,
    logging_config=logging_config(cfg.log_json),
)


def kilat_topic(name: str) -> faust.TopicT:
    """A Kilat-owned topic: raw bytes in and out (decoding is ours, so bad events can be
    dead-lettered instead of dropped), declared on start with the app's partition count."""
    return app.topic(
        topic_name(name),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=cfg.topic_partitions,
        internal=True,
    )


booking_events = kilat_topic(ev.BOOKING_EVENTS)
payment_events = kilat_topic(ev.PAYMENT_EVENTS)
runner_events = kilat_topic(ev.RUNNER_EVENTS)
tracking_events = kilat_topic(ev.TRACKING_EVENTS)
review_events = kilat_topic(ev.REVIEW_EVENTS)
chat_events = kilat_topic(ev.CHAT_EVENTS)
identity_events = kilat_topic(ev.IDENTITY_EVENTS)
trip_fixes = kilat_topic(ev.TRIP_FIXES)
login_failures = kilat_topic(ev.LOGIN_FAILURES)
job_offer_rounds = kilat_topic(ev.JOB_OFFER_ROUNDS)
dead_letter = kilat_topic(ev.DEAD_LETTER)

TOPICS: dict[str, faust.TopicT] = {
    ev.BOOKING_EVENTS: booking_events,
    ev.PAYMENT_EVENTS: payment_events,
    ev.RUNNER_EVENTS: runner_events,
    ev.TRACKING_EVENTS: tracking_events,
    ev.REVIEW_EVENTS: review_events,
    ev.CHAT_EVENTS: chat_events,
    ev.IDENTITY_EVENTS: identity_events,
    ev.TRIP_FIXES: trip_fixes,
    ev.LOGIN_FAILURES: login_failures,
    ev.JOB_OFFER_ROUNDS: job_offer_rounds,
    ev.DEAD_LETTER: dead_letter,
}


def main() -> None:
    """Console entry point: `kilat worker`, `kilat create-admin`, ... (Faust's CLI)."""
    app.main()


# Register tables, agents, commands and web views (they import `app` from this module).
import commands  # noqa: E402,F401
import streams  # noqa: E402,F401
import tables  # noqa: E402,F401
import web.server  # noqa: E402,F401
