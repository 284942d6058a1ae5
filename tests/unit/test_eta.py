"""ETA and arrival rules on the recorded GPS trace (tests/fixtures/gps_trace_5km.jsonl)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from domain import eta
from domain.tracking import advance, haversine_km, new_trip

TRACE = [json.loads(line) for line in (Path(__file__).resolve().parents[1] / "fixtures"
                                       / "gps_trace_5km.jsonl").read_text().splitlines()]
# The trace's corners (tests/fixtures/gps_trace_gen.py): it starts at KLCC, turns at Jalan
# Ampang, then runs south and west to Merdeka Square.
JALAN_AMPANG = [3.15950, 101.70420]
MERDEKA = [3.14780, 101.69340]


def ts(fix: dict) -> float:
    return datetime.fromisoformat(fix["timestamp"].replace("Z", "+00:00")).timestamp()


def trip(pickup=JALAN_AMPANG, dropoff=MERDEKA) -> dict:
    t = new_trip(booking_id="b1", track_id="t1", runner_id="r1", owner_id="o1",
                 started_at="2026-11-25T10:00:00Z")
    return eta.with_targets(t, pickup, dropoff)


def drive(t: dict, fixes: list[dict]) -> tuple[dict, list[eta.Step]]:
    steps = []
    for fix in fixes:
        s = eta.step(t, fix["latitude"], fix["longitude"], ts(fix), fix["speed_kmh"])
        steps.append(s)
        t = advance(s.trip, fix["latitude"], fix["longitude"], ts(fix))
    return t, steps


def nearest_index(target: list[float]) -> int:
    return min(range(len(TRACE)), key=lambda i: haversine_km(
        TRACE[i]["latitude"], TRACE[i]["longitude"], *target))


def test_eta_to_the_pickup_decreases_and_reaches_zero_on_arrival() -> None:
    k = nearest_index(JALAN_AMPANG)
    _, steps = drive(trip(), TRACE[:k + 1])
    etas = [s.frame["eta_minutes"] for s in steps]
    distances = [s.frame["distance_remaining_km"] for s in steps]
    # Heading straight for the pickup: never up by more than the GPS jitter's worth.
    assert all(b <= a + 0.02 for a, b in zip(distances, distances[1:], strict=False))
    assert all(b <= a + 0.1 for a, b in zip(etas[1:], etas[2:], strict=False))
    assert etas[0] == pytest.approx(distances[0] / eta.DEFAULT_SPEED_KMH * 60, abs=0.1)
    assert distances[-1] < 0.05 and etas[-1] == 0.0


def test_eta_uses_the_smoothed_speed() -> None:
    # The trace is sped up (about 250 km/h between 1 s fixes): after the first moving fix the
    # ETA is distance over that speed, not the default.
    _, steps = drive(trip(), TRACE[:6])
    s = steps[5]
    speed = s.trip["speed_avg_kmh"]
    assert 200 < speed < 300
    assert s.frame["eta_minutes"] == pytest.approx(
        s.frame["distance_remaining_km"] / speed * 60, abs=0.05)


def test_after_pickup_the_eta_is_to_the_dropoff_and_reaches_zero() -> None:
    k = nearest_index(JALAN_AMPANG)
    t, _ = drive(trip(), TRACE[:k + 1])
    t = eta.start_dropoff_leg(t)
    _, steps = drive(t, TRACE[k + 1:])
    tail = [s.frame["distance_remaining_km"] for s in steps[-15:]]  # the last, straight leg
    assert all(b <= a + 0.02 for a, b in zip(tail, tail[1:], strict=False))
    assert steps[-1].frame["distance_remaining_km"] < 0.05
    assert steps[-1].frame["eta_minutes"] == 0.0


def test_arrival_alert_once_per_leg() -> None:
    _, steps = drive(trip(), TRACE)
    alerts = [s.arriving for s in steps if s.arriving]
    assert [a["leg"] for a in alerts] == ["pickup"]
    first = next(s for s in steps if s.arriving)
    assert first.frame["distance_remaining_km"] <= eta.ARRIVING_RADIUS_KM
    assert alerts[0]["minutes"] >= 1 and alerts[0]["place"] == "pickup point"
    # Every fix before it was outside the geofence.
    before = steps[:steps.index(first)]
    assert all(s.frame["distance_remaining_km"] > eta.ARRIVING_RADIUS_KM for s in before)


def test_entering_leaving_and_reentering_alerts_once() -> None:
    t = trip(pickup=[3.0, 101.0], dropoff=[3.1, 101.1])
    inside, outside = (3.001, 101.0), (3.01, 101.0)  # ~110 m and ~1.1 km from the pickup
    path = [outside, inside, outside, inside, (3.0005, 101.0)]
    alerts = []
    for i, (lat, lng) in enumerate(path):
        s = eta.step(t, lat, lng, 1000.0 + i * 10, 30.0)
        alerts.append(s.arriving)
        t = advance(s.trip, lat, lng, 1000.0 + i * 10)
    assert [a is not None for a in alerts] == [False, True, False, False, False]
    # The next leg has its own alert.
    t = eta.start_dropoff_leg(t)
    s = eta.step(t, 3.0995, 101.1, 2000.0, 30.0)
    assert s.arriving is not None and s.arriving["leg"] == "dropoff"
    assert s.arriving["minutes_text"] == "1 minute"


def test_a_redelivered_fix_repeats_its_alert_under_the_same_id() -> None:
    t = trip(pickup=[3.0, 101.0])
    s = eta.step(t, 3.002, 101.0, 1000.0, 30.0)
    assert s.arriving is not None
    t = advance(s.trip, 3.002, 101.0, 1000.0)
    assert eta.replayed_arrival(t, 3.002, 101.0, 1000.0) == s.arriving
    assert eta.replayed_arrival(t, 3.002, 101.0, 999.0) is None
    assert eta.arriving_event_id("b1", "pickup") == eta.arriving_event_id("b1", "pickup")
    assert eta.arriving_event_id("b1", "pickup") != eta.arriving_event_id("b1", "dropoff")


def test_stationary_or_unknown_speed_uses_the_default() -> None:
    assert eta.speed_for_eta(None) == eta.DEFAULT_SPEED_KMH
    assert eta.speed_for_eta(1.0) == eta.DEFAULT_SPEED_KMH
    assert eta.speed_for_eta(42.0) == 42.0
    t = trip(pickup=[3.0, 101.0])
    # A runner standing still (device says 0, no movement) for minutes.
    for i in range(20):
        s = eta.step(t, 3.1, 101.0, 1000.0 + i * 30, 0.0)
        t = advance(s.trip, 3.1, 101.0, 1000.0 + i * 30)
    assert s.frame["eta_minutes"] == pytest.approx(
        s.frame["distance_remaining_km"] / eta.DEFAULT_SPEED_KMH * 60, abs=0.05)


def test_smoothing_weights_by_time_and_ignores_implausible_jumps() -> None:
    assert eta.smoothed_speed(None, 30.0, 1.0) == 30.0
    assert eta.smoothed_speed(30.0, None, 5.0) == 30.0
    short, long = eta.smoothed_speed(30.0, 60.0, 1.0), eta.smoothed_speed(30.0, 60.0, 120.0)
    assert 30.0 < short < 32.0 and 58.0 < long < 60.0
    t = advance(trip(), 3.0, 101.0, 1000.0)
    # 11 km in 1 s without a device speed: a GPS jump, not a speed.
    assert eta.observed_speed(t, 3.1, 101.0, 1001.0, 0.0) is None
    assert eta.observed_speed(t, 3.001, 101.0, 1010.0, 0.0) == pytest.approx(40.0, rel=0.01)


def test_a_trip_without_targets_has_no_eta() -> None:
    t = new_trip(booking_id="b", track_id="t", runner_id="r", owner_id="o", started_at="")
    s = eta.step(t, 3.0, 101.0, 1.0, 10.0)
    assert s.frame == {} and s.arriving is None
