"""Replication settings and what they do to topics and producers (no broker needed: nothing
here connects)."""

from __future__ import annotations

import asyncio

import faust
import pytest

from core.config import replication_defaults
from core.replication import broker_urls, replicated_topic_class


@pytest.mark.parametrize(("brokers", "expected"), [
    ("127.0.0.1:9092", (1, 1)),
    ("a:9092,b:9092", (1, 1)),
    ("a:9092, b:9092 ,c:9092", (3, 2)),
    ("a:1,b:2,c:3,d:4,e:5", (3, 2)),
    ("a:9092,,", (1, 1)),
])
def test_three_brokers_or_more_hold_three_copies_and_acknowledge_with_two(
        brokers: str, expected: tuple[int, int]) -> None:
    assert replication_defaults(brokers) == expected


def _app(replicas: int, min_insync: int) -> faust.App:
    return faust.App(
        "replication-unit", broker=broker_urls("127.0.0.1:1,127.0.0.2:1,127.0.0.3:1"),
        store="memory://", topic_replication_factor=replicas, producer_acks=-1,
        Topic=replicated_topic_class(replicas, min_insync), autodiscover=False)


def test_topics_and_changelogs_are_declared_replicated() -> None:
    app = _app(3, 2)
    topic = app.topic("bookings", value_serializer="raw")
    table = app.Table("positions", default=dict, partitions=3)
    for declared in (topic, table.changelog_topic):
        assert declared.replicas == 3
        assert declared.config["min.insync.replicas"] == "2"


def test_a_topics_own_settings_win() -> None:
    app = _app(3, 2)
    topic = app.topic("audit", replicas=5, config={"min.insync.replicas": "3",
                                                   "retention.ms": "1000"})
    assert topic.replicas == 5
    assert topic.config == {"min.insync.replicas": "3", "retention.ms": "1000"}


def test_producers_wait_for_all_replicas_with_idempotence() -> None:
    app = _app(3, 2)

    async def build() -> None:
        producer = app.producer._new_producer()  # built, never started: no connection
        assert producer._txn_manager is not None  # aiokafka's idempotence state
        assert producer._sender._acks == -1  # all in-sync replicas
        assert sorted(producer.client._bootstrap_servers) == [
            "127.0.0.1:1", "127.0.0.2:1", "127.0.0.3:1"]

    asyncio.run(build())
