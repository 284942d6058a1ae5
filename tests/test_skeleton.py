"""Walking skeleton: real Kafka and PostGIS, a worker process, the gateway, table recovery."""

from __future__ import annotations

import uuid

import aiohttp

from core.security import issue_access_token
from models.events import new_event
from tests.platform import Platform, wait_until


def fix_event(runner_id: str, lat: float, lng: float, ts: str) -> bytes:
    return new_event("device", "runner.location_update", {
        "runner_id": runner_id, "latitude": lat, "longitude": lng, "speed_kmh": 20.5,
        "heading_degrees": 90.0, "timestamp": ts,
    }).to_json()


async def position(http: aiohttp.ClientSession, base: str, runner_id: str) -> tuple[int, dict]:
    token = issue_access_token(str(uuid.uuid4()), "ops@kilat.test", "admin")
    async with http.get(f"{base}/api/v1/admin/runners/{runner_id}/position",
                        headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_health_and_readiness_through_gateway(platform: Platform, http) -> None:
    async with http.get(platform.base_url + "/health") as resp:
        body = await resp.json()
        assert resp.status == 200, body
        assert body["status"] == "healthy"
        assert {s["name"] for s in body["services"]} >= {"identity", "booking", "tracking"}
    async with http.get(platform.workers[0].url + "/readiness") as resp:
        body = await resp.json()
        assert resp.status == 200
        assert body["checks"] == {"database": "ready", "kafka": "ready", "tables": "ready"}


async def test_unknown_route_is_404_in_envelope(platform: Platform, http) -> None:
    async with http.get(platform.base_url + "/api/v1/nope") as resp:
        assert resp.status == 404
        assert await resp.json() == {"error": "route not found", "success": False}


async def test_gps_event_reaches_table_and_postgis_and_survives_restart(fresh_platform, http):
    p: Platform = fresh_platform
    w1 = p.start_worker("w1")
    await p.wait_ready(w1)
    gw = p.start_gateway()
    await p.wait_ready(gw, "/health")
    runner = str(uuid.uuid4())

    await p.produce("runner.events", runner, fix_event(runner, 3.139, 101.6869,
                                                      "2026-11-25T10:00:00Z"))

    async def stored():
        status, body = await position(http, p.base_url, runner)
        return status == 200 and body["data"]["stored"] and body["data"]["live"] and body

    body = await wait_until(stored, 30, what="position in table and PostGIS")
    assert body["data"]["live"]["latitude"] == 3.139
    assert abs(body["data"]["stored"]["longitude"] - 101.6869) < 1e-9
    rows = p.sql("SELECT ST_Y(location::geometry) AS lat FROM runner_locations "
                 "WHERE runner_id = %s", (runner,))
    assert rows == [{"lat": 3.139}]

    # An older fix arriving late must not move the runner back.
    await p.produce("runner.events", runner, fix_event(runner, 1.0, 100.0,
                                                      "2026-11-25T09:59:00Z"))
    newer = fix_event(runner, 3.2, 101.7, "2026-11-25T10:00:05Z")
    await p.produce("runner.events", runner, newer)

    async def moved():
        _, b = await position(http, p.base_url, runner)
        return b["data"]["live"]["latitude"] == 3.2 and b["data"]["stored"]["latitude"] == 3.2
    await wait_until(moved, 30, what="newer fix applied")

    # Restart on an empty data directory: the table must come back from its changelog.
    p.stop(w1)
    w2 = p.start_worker("w2")
    await p.wait_ready(w2)
    p.stop(gw)
    gw = p.start_gateway()
    await p.wait_ready(gw, "/health")
    status, body = await position(http, p.base_url, runner)
    assert status == 200
    assert body["data"]["live"]["latitude"] == 3.2
    assert body["data"]["live"]["timestamp"] == 1795600805.0


async def test_malformed_event_is_dead_lettered_and_partition_moves_on(platform, http):
    runner = str(uuid.uuid4())
    await platform.produce("runner.events", runner, b"{not json")
    await platform.produce("runner.events", runner, new_event("device", "runner.location_update",
                           {"runner_id": runner, "latitude": 123.0, "longitude": 0.0,
                            "timestamp": "2026-11-25T10:00:00Z"}).to_json())
    await platform.produce("runner.events", runner, fix_event(runner, 3.1, 101.6,
                                                             "2026-11-25T10:00:00Z"))

    async def good_fix_applied():
        status, body = await position(http, platform.base_url, runner)
        return status == 200 and body["data"]["live"] is not None

    await wait_until(good_fix_applied, 30, what="valid fix after bad ones")
    dead = [d for d in await platform.read_topic("kilat.dead-letter") if d.get("_key") == runner]
    reasons = sorted(d["reason"] for d in dead)
    assert len(dead) == 2, dead
    assert reasons[0].startswith("not JSON")
    assert "coordinates out of range" in reasons[1]


async def test_metrics_endpoint_reports_events_http_and_lag(platform: Platform, http) -> None:
    runner = str(uuid.uuid4())
    await platform.produce("runner.events", runner, fix_event(runner, 3.12, 101.6,
                                                             "2026-11-25T12:00:00Z"))
    await platform.produce("runner.events", runner, b"{broken")
    worker = platform.workers[0].url

    async def scraped() -> str | None:
        async with http.get(worker + "/metrics") as resp:
            text = await resp.text()
        ok = ('kilat_events_processed_total{consumer="runner-gps",outcome="ok",'
              'type="runner.location_update"}' in text)
        return text if ok else None

    text = await wait_until(scraped, 30, what="GPS event counted in /metrics")
    assert 'kilat_http_request_duration_seconds_bucket{' in text
    assert "kilat_websocket_connections" in text

    async def lag_and_tables() -> bool:
        async with http.get(worker + "/metrics") as resp:
            body = await resp.text()
        return "kilat_consumer_lag{" in body and 'kilat_table_entries{table="runner-positions"}' in body
    await wait_until(lag_and_tables, 30, what="lag and table gauges refreshed")
