"""Durable Kafka writes: replicated topics and idempotent producers.

Every topic the app declares (its own, table changelogs, Faust's internal ones) is created with
the configured replication factor and `min.insync.replicas`, and every producer waits for all
in-sync replicas (`acks=all`) with idempotence on, so a broker failing mid-write neither loses
an acknowledged event nor writes a retried one twice.

Faust only turns idempotence on for exactly-once processing, which Kilat does not use (its
effects are made exactly-once in PostgreSQL), so the producer is given its own transport; the
`kilat-kafka://` broker scheme selects it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faust
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka

SCHEME = "kilat-kafka"


class IdempotentProducer(faust_aiokafka.Producer):
    """Faust's aiokafka producer with `enable_idempotence` (it requires acks=all)."""

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class Transport(faust_aiokafka.Transport):
    Producer = IdempotentProducer


TRANSPORTS.aliases.setdefault(SCHEME, f"{__name__}:Transport")


def broker_urls(brokers: str) -> list[str]:
    """Faust broker URLs for a comma-separated `host:port` list, on the idempotent transport."""
    return [f"{SCHEME}://{host.strip()}" for host in brokers.split(",") if host.strip()]


def replicated_topic_class(replication_factor: int, min_insync: int) -> type[faust.Topic]:
    """A Faust topic class whose topics are declared with `replication_factor` copies and
    `min.insync.replicas` = `min_insync`; a topic's own settings, when given, win."""

    class ReplicatedTopic(faust.Topic):
        def __init__(self, *args: Any, replicas: int | None = None,
                     config: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
            super().__init__(
                *args,
                replicas=replicas or replication_factor,
                config={"min.insync.replicas": str(min_insync), **(config or {})},
                **kwargs,
            )

    return ReplicatedTopic
