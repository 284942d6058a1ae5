"""Periodic gauges for Prometheus: consumer lag per partition and table sizes."""

from __future__ import annotations

from prometheus_client import Gauge

from kilat import app
from web.metrics import TABLE_SIZE

CONSUMER_LAG = Gauge("kilat_consumer_lag", "Messages not yet committed", ["topic", "partition"])


@app.timer(5.0, name="kilat.metrics-refresh")
async def refresh_gauges() -> None:
    consumer = app.consumer
    committed = getattr(consumer, "_committed_offset", {})  # Faust keeps the last commit here
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        done = committed.get(tp)
        lag = highwater - (done + 1 if done is not None else 0)
        CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(lag, 0))
    for name, table in app.tables.items():
        try:
            TABLE_SIZE.labels(name).set(len(table))
        except Exception:  # a table being recovered cannot be counted yet
            continue
