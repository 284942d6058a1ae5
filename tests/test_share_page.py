"""The live trip page behind a share link: content negotiation, the expired and unknown pages,
the public read-only WebSocket, and the page itself in a real headless Chromium (Debian's
`chromium`, driven by Playwright) through the gateway."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from domain.share import (
    content_security_policy,
    prefers_html,
    public_location,
    status_text,
    tile_source,
)
from models.events import new_event
from tests.platform import Platform, wait_until
from tests.test_tracking import booked

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
START = datetime.now(UTC).replace(microsecond=0)
_fix_seq = iter(range(1, 10_000))


def fix_event(runner_id: str, lat: float, lng: float) -> bytes:
    """A device fix, each newer than the last (the runner stage drops older ones)."""
    at = START + timedelta(seconds=next(_fix_seq))
    return new_event("device", "runner.location_update", {
        "runner_id": runner_id, "latitude": lat, "longitude": lng, "speed_kmh": 18.0,
        "heading_degrees": 90.0, "timestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ")}).to_json()


async def shared(platform: Platform, new_client) -> tuple[Any, Any, str, str]:
    """An accepted booking of Milo, and a share link of it: (owner, runner, booking, token)."""
    owner, runner, booking_id = await booked(platform, new_client)
    status, body = await owner.post(f"/api/v1/tracking/{booking_id}/share")
    assert status == 201, body
    return owner, runner, booking_id, body["data"]["share_token"]


async def get(http: aiohttp.ClientSession, url: str, accept: str | None) -> tuple[int, str, Any]:
    headers = {"Accept": accept} if accept is not None else {}
    async with http.get(url, headers=headers, skip_auto_headers=["Accept"]) as resp:
        text = await resp.text()
        return resp.status, resp.content_type, (resp.headers, text)


# ---------------------------------------------------------------- rules

def test_accept_header_picks_the_page_only_for_browsers() -> None:
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    assert prefers_html(browser)
    assert prefers_html("text/html")
    for api in ("", "*/*", "application/json", "application/json, text/html",
                "text/html;q=0.5, application/json", "text/html;q=0, */*", "text/plain"):
        assert not prefers_html(api), api


def test_csp_names_only_the_tile_server() -> None:
    assert tile_source("https://tile.openstreetmap.org/{z}/{x}/{y}.png") == \
        "https://tile.openstreetmap.org"
    assert tile_source("https://{s}.tile.example.org:8443/{z}/{x}/{y}.png") == \
        "https://*.tile.example.org:8443"
    assert tile_source("") == "" and tile_source("javascript:alert(1)") == ""
    assert "img-src 'self' data:;" in content_security_policy("")


def test_public_frames_carry_no_ids_and_no_chat() -> None:
    frame = {"type": "location_update", "data": {
        "booking_id": "b", "runner_id": "r", "latitude": 3.1, "longitude": 101.7,
        "speed_kmh": 10.0, "heading_degrees": 5.0, "timestamp": "2026-12-01T07:00:00Z",
        "eta_minutes": 4.0}, "runner_id": "r"}
    assert public_location(frame) == {"type": "location_update", "data": {
        "latitude": 3.1, "longitude": 101.7, "speed_kmh": 10.0, "heading_degrees": 5.0,
        "timestamp": "2026-12-01T07:00:00Z", "eta_minutes": 4.0}}
    assert public_location({"type": "chat_message", "content": "my address is ..."}) is None
    assert status_text("in_progress", "active", "Milo") == "Milo is on the way."
    assert status_text("delivered", "completed", "Milo") == "Milo has arrived. The trip has ended."


# ---------------------------------------------------------------- HTTP and WebSocket

async def test_share_link_answers_browsers_with_a_page_and_api_clients_with_json(
        platform: Platform, new_client, http) -> None:
    owner, runner, booking_id, token = await shared(platform, new_client)
    url = f"{platform.base_url}/api/v1/tracking/shared/{token}"
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

    status, ctype, (headers, page) = await get(http, url, browser)
    assert (status, ctype) == (200, "text/html"), page
    assert "Milo's trip" in page and "The runner is on the way to pick up Milo." in page
    assert 'role="status"' in page and 'aria-live="polite"' in page
    assert f'data-ws="/ws/tracking/shared/{token}"' in page
    assert "/api/v1/tracking/assets/leaflet/leaflet" in page
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "img-src 'self' data: https://tile.openstreetmap.org" in csp
    assert headers["Vary"] == "Accept" and headers["Cache-Control"] == "no-store"
    assert headers["Referrer-Policy"] == "no-referrer"  # the token stays off tile requests
    assert "booking_id" not in page and booking_id not in page  # nothing but the token
    assert runner.user["id"] not in page and owner.user["id"] not in page

    for accept in ("application/json", "*/*", None):
        status, ctype, (headers, text) = await get(http, url, accept)
        assert (status, ctype) == (200, "application/json"), (accept, text)
        assert json.loads(text)["data"]["booking_id"] == booking_id  # the contract's JSON
        assert headers["Vary"] == "Accept"

    # The page's assets come from us, through the gateway.
    for path, kind in (("/api/v1/tracking/assets/leaflet/leaflet.min.js", "javascript"),
                       ("/api/v1/tracking/assets/leaflet/leaflet.css", "text/css"),
                       ("/api/v1/tracking/assets/page/share.js", "javascript"),
                       ("/api/v1/tracking/assets/page/share.css", "text/css")):
        async with http.get(platform.base_url + path) as resp:
            assert resp.status == 200, path
            assert kind in resp.content_type, (path, resp.content_type)
    async with http.get(platform.base_url + "/api/v1/tracking/assets/page/../trip.html") as r:
        assert r.status == 404

    # Unknown and expired links: a clear page (404 / 410); JSON keeps the contract's 404.
    status, ctype, (_, page) = await get(http, url[:-32] + "f" * 32, browser)
    assert (status, ctype) == (404, "text/html") and "does not exist" in page
    platform.sql("UPDATE shared_trips SET expires_at = now() - interval '1 second' "
                 "WHERE share_token = %s", (token,))
    status, ctype, (_, page) = await get(http, url, browser)
    assert (status, ctype) == (410, "text/html") and "This trip link has expired" in page
    status, _, (headers, text) = await get(http, url, "application/json")
    assert (status, json.loads(text)) == (
        404, {"success": False, "error": "share link has expired"})
    assert headers["Vary"] == "Accept"


async def test_html_page_escapes_the_pet_name(platform: Platform, new_client, http) -> None:
    owner = await new_client("owner")
    body = {"pet_spec": {"pet_type": "cat", "name": "Mi</script><img src=x onerror=alert(1)>",
                         "weight_kg": 4},
            "pickup_address": {"line1": "1 Jalan", "city": "KL", "state": "WP",
                               "postal_code": "50450", "country": "MY", "latitude": 3.15,
                               "longitude": 101.71},
            "dropoff_address": {"line1": "2 Jalan", "city": "KL", "state": "WP",
                                "postal_code": "50450", "country": "MY", "latitude": 3.14,
                                "longitude": 101.69}}
    status, created = await owner.post("/api/v1/bookings", body)
    assert status == 201, created
    status, share = await owner.post(f"/api/v1/tracking/{created['data']['id']}/share")
    assert status == 201, share
    status, ctype, (_, page) = await get(
        http, platform.base_url + share["data"]["share_url"], "text/html")
    assert (status, ctype) == (200, "text/html")  # no track yet: the page still opens
    assert "<img src=x" not in page and "</script><img" not in page
    assert "Mi&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    assert "Waiting for a runner" in page


async def test_public_websocket_sends_status_and_public_fixes_only(platform: Platform,
                                                                   new_client, http) -> None:
    owner, runner, booking_id, token = await shared(platform, new_client)
    ws_base = platform.base_url.replace("http", "ws", 1)
    for bad, code in (("f" * 32, 404), ("nope", 404)):
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await http.ws_connect(f"{ws_base}/ws/tracking/shared/{bad}")
        assert err.value.status == code
    ws = await http.ws_connect(f"{ws_base}/ws/tracking/shared/{token}")
    first = json.loads((await ws.receive(timeout=10)).data)
    assert first == {"type": "trip_status", "booking_status": "accepted",
                     "track_status": "active", "ended": False,
                     "text": "The runner is on the way to pick up Milo."}
    status, _ = await owner.post(f"/api/v1/chat/{booking_id}/messages",
                                 {"message_type": "text", "content": "gate code 1234"})
    assert status == 201
    rid = runner.user["id"]
    await platform.produce("runner.events", rid, fix_event(rid, 3.1580, 101.7118))
    frame = json.loads((await ws.receive(timeout=15)).data)  # the chat never comes
    assert frame["type"] == "location_update"
    assert set(frame) == {"type", "data"}
    assert frame["data"]["latitude"] == 3.1580 and frame["data"]["longitude"] == 101.7118
    assert "runner_id" not in frame["data"] and "booking_id" not in frame["data"]

    # Paid, picked up, delivered: a status frame each time, then the socket closes (1000).
    assert (await owner.post("/api/v1/payments/initiate", {"booking_id": booking_id}))[0] == 201
    assert (await runner.post(f"/api/v1/bookings/{booking_id}/pickup"))[0] == 200
    frame = json.loads((await ws.receive(timeout=15)).data)
    assert (frame["type"], frame["booking_status"]) == ("trip_status", "in_progress")
    assert (await runner.post(f"/api/v1/bookings/{booking_id}/deliver"))[0] == 200
    frame = json.loads((await ws.receive(timeout=15)).data)
    assert frame["type"] == "trip_status" and frame["ended"] is True
    assert frame["text"] == "Milo has arrived. The trip has ended."
    closing = await ws.receive(timeout=10)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert ws.close_code == 1000
    await ws.close()

    # A viewer of an ended trip gets the end at once; an expired link is refused (410).
    ws = await http.ws_connect(f"{ws_base}/ws/tracking/shared/{token}")
    assert json.loads((await ws.receive(timeout=10)).data)["ended"] is True
    await ws.close()
    platform.sql("UPDATE shared_trips SET expires_at = now() - interval '1 second' "
                 "WHERE share_token = %s", (token,))
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await http.ws_connect(f"{ws_base}/ws/tracking/shared/{token}")
    assert err.value.status == 410
    async with http.get(f"{platform.base_url}/ws/tracking/shared/{token}") as resp:
        assert (resp.status, await resp.json()) == (410, {"error": "share link has expired"})


async def test_open_viewer_is_told_when_its_link_expires(platform: Platform, new_client,
                                                         http) -> None:
    _, _, _, token = await shared(platform, new_client)
    ws = await http.ws_connect(
        f"{platform.base_url.replace('http', 'ws', 1)}/ws/tracking/shared/{token}")
    assert json.loads((await ws.receive(timeout=10)).data)["type"] == "trip_status"
    platform.sql("UPDATE shared_trips SET expires_at = now() WHERE share_token = %s", (token,))
    frame = json.loads((await ws.receive(timeout=10)).data)
    assert frame == {"type": "link_expired", "text": "This trip link has expired."}
    assert (await ws.receive(timeout=10)).type in (aiohttp.WSMsgType.CLOSE,
                                                   aiohttp.WSMsgType.CLOSED)
    await ws.close()


# ---------------------------------------------------------------- the page in Chromium

async def test_share_page_in_a_real_browser(platform: Platform, new_client, tmp_path) -> None:
    """Loads the page through the gateway on a phone-sized screen: status, the last fix as
    text and on the map; a new GPS fix moves the marker and the text within 2 s; the end of
    the trip shows. Map tiles cannot load here (no internet): the page works without them."""
    from playwright.async_api import async_playwright, expect

    assert os.path.exists(CHROMIUM), "Debian's chromium is needed: scripts/bootstrap.sh --browser"
    owner, runner, booking_id, token = await shared(platform, new_client)
    rid = runner.user["id"]
    await platform.produce("runner.events", rid, fix_event(rid, 3.15790, 101.71170))

    async def stored() -> bool:
        rows = platform.sql("SELECT count(*) AS n FROM waypoints w JOIN trip_tracks t ON "
                            "t.id = w.trip_track_id WHERE t.booking_id = %s", (booking_id,))
        return rows[0]["n"] == 1
    await wait_until(stored, 30, what="the first fix stored")

    gateway = urlsplit(platform.base_url)
    requests: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM,
                                           args=["--no-sandbox", "--disable-gpu"])
        try:
            context = await browser.new_context(viewport={"width": 390, "height": 844},
                                                device_scale_factor=1, is_mobile=True,
                                                has_touch=True)
            page = await context.new_page()
            page.on("request", lambda req: requests.append(req.url))
            await page.goto(f"{platform.base_url}/api/v1/tracking/shared/{token}")
            status = page.locator("#status")
            # Locator waits: the page's CSP (rightly) forbids the eval a predicate needs.
            await expect(page.locator("#connection")).to_have_text(re.compile("^Live"),
                                                                   timeout=10_000)
            assert await status.inner_text() == "The runner is on the way to pick up Milo."
            last_seen = page.locator("#last-seen")
            assert (await last_seen.inner_text()).startswith("3.15790, 101.71170 at ")
            assert await page.locator("#route-text").inner_text() == "1 GPS point, 0.00 km"
            marker = page.locator(".runner-marker")
            await marker.wait_for(state="visible", timeout=5000)
            before = await marker.bounding_box()
            assert before is not None
            # Phone layout: nothing wider than the screen.
            assert await page.evaluate(
                "document.documentElement.scrollWidth <= window.innerWidth")

            produced = time.monotonic()  # the clock runs from before the fix is sent
            await platform.produce("runner.events", rid, fix_event(rid, 3.15890, 101.71270))
            await expect(last_seen).to_have_text(
                re.compile("^3.15890, 101.71270 at "), timeout=2000)
            took = time.monotonic() - produced
            after = await marker.bounding_box()
            assert after is not None and after != before
            assert after["y"] < before["y"] and after["x"] > before["x"]  # north-east
            assert took < 2.0
            label = await marker.get_attribute("aria-label")
            assert label and label.startswith("Runner last seen at 3.15890, 101.71270")
            assert (await page.locator("#route-text").inner_text()).startswith("2 GPS points")
            await page.screenshot(path=str(tmp_path / "share-page-live.png"), full_page=True)

            # The trip ends: the page says so and stops updating.
            assert (await owner.post("/api/v1/payments/initiate",
                                     {"booking_id": booking_id}))[0] == 201
            assert (await runner.post(f"/api/v1/bookings/{booking_id}/pickup"))[0] == 200
            assert (await runner.post(f"/api/v1/bookings/{booking_id}/deliver"))[0] == 200
            await expect(status).to_have_text("Milo has arrived. The trip has ended.",
                                              timeout=15_000)
            assert await page.locator("#eta").inner_text() == "The trip has ended"
            await page.screenshot(path=str(tmp_path / "share-page-ended.png"), full_page=True)
            await context.close()
        finally:
            await browser.close()
    print(f"share page screenshots in {tmp_path}; fix → page in {took:.2f}s")
    # No third-party requests: everything from the gateway, except the map tiles.
    tiles = urlsplit("https://tile.openstreetmap.org/").netloc
    others = [u for u in requests
              if urlsplit(u).netloc not in (gateway.netloc, tiles) and not u.startswith("data:")]
    assert others == []
    assert any("/api/v1/tracking/assets/leaflet/" in u for u in requests)


async def test_demo_prints_the_live_page(platform: Platform, http) -> None:
    """`make demo` (kilat demo) prints the share page's URL; after the delivery it shows the end."""
    out = await platform.kilat("demo", "--base-url", platform.base_url, "--interval", "0")
    [line] = [line for line in out.splitlines() if line.startswith("page ")]
    url = line.split()[1]
    assert url.startswith(f"{platform.base_url}/api/v1/tracking/shared/")
    status, ctype, (_, page) = await get(http, url, "text/html")
    assert (status, ctype) == (200, "text/html")
    assert "Comot&#x27;s trip" in page or "Comot's trip" in page
    assert "Comot has arrived. The trip has ended." in page
