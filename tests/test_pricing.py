"""Pure booking rules: pricing worked examples (reference §3.2), crates, state machine,
booking numbers, scheduled_at parsing, who may act."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from domain import booking as rules

KL_A = (3.139, 101.6869)
KL_B = (3.15, 101.71)
JB = (1.4927, 103.7414)


def price(pet_type: str, weight: float, a=KL_A, b=KL_B) -> int:
    crate = rules.crate_requirement(pet_type, weight)
    return rules.estimate_price_cents(a, b, pet_type, crate["minimum_size"])


def test_haversine_kl_example() -> None:
    assert rules.haversine_km(*KL_A, *KL_B) == pytest.approx(2.84147, abs=1e-4)


@pytest.mark.parametrize(("pet_type", "weight", "expected"), [
    ("cat", 4, 1510), ("dog", 8, 2210), ("reptile", 35, 4010),
])
def test_worked_examples_in_kl(pet_type: str, weight: float, expected: int) -> None:
    assert price(pet_type, weight) == expected


def test_worked_example_johor_bahru_to_kl() -> None:
    assert rules.haversine_km(*JB, *KL_A) == pytest.approx(292.59, abs=0.01)
    assert price("cat", 4, JB, KL_A) == 73948


def test_small_pets_priced_like_other() -> None:
    assert price("hamster", 0.2) == price("other", 0.2) == 500 + 710 + 500
    assert price("fish", 1) == price("other", 1)
    with pytest.raises(rules.BookingRuleError, match="invalid pet type: dragon"):
        rules.normalise_pet_type("dragon")


@pytest.mark.parametrize(("weight", "size"), [
    (0.1, "small"), (5, "small"), (5.01, "medium"), (15, "medium"), (15.5, "large"),
    (30, "large"), (30.1, "xlarge"),
])
def test_crate_size_thresholds(weight: float, size: str) -> None:
    assert rules.crate_size(weight) == size


def test_crate_requirement_shape() -> None:
    assert rules.crate_requirement("reptile", 10) == {
        "minimum_size": "medium", "needs_ventilation": True, "needs_temp_control": True,
        "minimum_weight_capacity": pytest.approx(12.0)}
    assert rules.crate_requirement("dog", 10)["needs_temp_control"] is False


def test_quote_validation_order() -> None:
    addr = {"latitude": KL_A[0], "longitude": KL_A[1]}
    with pytest.raises(rules.BookingRuleError, match="pet name is required"):
        rules.quote({"name": " ", "pet_type": "cat", "weight_kg": 1}, addr, addr)
    with pytest.raises(rules.BookingRuleError, match="pet weight must be positive"):
        rules.quote({"name": "Milo", "pet_type": "cat", "weight_kg": -1}, addr, addr)
    q = rules.quote({"name": "Milo", "pet_type": "Cat", "weight_kg": 4}, addr, addr)
    assert (q.pet_type, q.price_cents) == ("cat", 800)


def test_state_machine() -> None:
    allowed = {(a, b) for a, bs in rules.TRANSITIONS.items() for b in bs}
    assert allowed == {
        ("requested", "accepted"), ("requested", "cancelled"), ("accepted", "in_progress"),
        ("accepted", "cancelled"), ("accepted", "requested"), ("in_progress", "delivered"),
        ("in_progress", "cancelled"), ("delivered", "completed")}
    with pytest.raises(rules.InvalidTransition, match="cannot transition from 'delivered' "
                                                      "to 'cancelled'"):
        rules.check_transition("delivered", "cancelled")


def test_booking_number() -> None:
    numbers = {rules.new_booking_number() for _ in range(200)}
    assert len(numbers) == 200
    assert all(re.fullmatch(r"BK-[ABCDEFGHJKLMNPQRSTUVWXYZ23456789]{6}", n) for n in numbers)


def test_scheduled_at() -> None:
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    assert rules.parse_scheduled_at("2026-12-01T10:00:00Z", now) == datetime(2026, 12, 1, 10,
                                                                              tzinfo=UTC)
    # Without an offset (Flutter's toIso8601String of a local time): Malaysia time, UTC+8.
    local = rules.parse_scheduled_at("2026-12-01T10:00:00.000", now)
    assert local is not None and local.astimezone(UTC) == datetime(2026, 12, 1, 2, tzinfo=UTC)
    assert rules.parse_scheduled_at(None, now) is None
    with pytest.raises(rules.BookingRuleError, match="RFC 3339"):
        rules.parse_scheduled_at("tomorrow", now)
    # Between now - 5 minutes and now + 90 days, both ends included.
    assert rules.parse_scheduled_at("2026-11-30T11:55:00Z", now) is not None
    assert rules.parse_scheduled_at("2027-02-28T12:00:00Z", now) is not None
    for outside in ("2026-11-30T11:54:59Z", "2027-02-28T12:00:01Z", "0001-01-01T00:00:00Z",
                    "9999-12-31T23:59:59-12:00", "9999-12-31T23:59:59"):
        with pytest.raises(rules.BookingRuleError, match="between 5 minutes ago"):
            rules.parse_scheduled_at(outside, now)


def test_status_filter() -> None:
    assert rules.parse_status_filter(None) is None
    assert rules.parse_status_filter("active") == ("accepted", "in_progress")
    assert rules.parse_status_filter("requested,completed") == ("requested", "completed")
    with pytest.raises(rules.BookingRuleError, match="invalid status"):
        rules.parse_status_filter("picked_up")


def test_who_may_act() -> None:
    b = {"id": "b", "owner_id": "o", "runner_id": None, "status": "requested"}
    assert rules.may_view(b, "any-runner", "runner")
    assert not rules.may_view(b, "other-owner", "owner")
    rules.check_actor("accept", b, "r1", "runner")
    with pytest.raises(rules.NotAllowed, match="not your booking"):
        rules.check_actor("pickup", b, "r1", "runner")
    assigned = {**b, "runner_id": "r1", "status": "accepted"}
    assert not rules.may_view(assigned, "r2", "runner")
    with pytest.raises(rules.NotAllowed):
        rules.check_actor("cancel", assigned, "r2", "runner")
    rules.check_actor("cancel", assigned, "x", "admin")


def test_cancel_events_release_assigned_runner() -> None:
    b = {"id": "b1", "booking_number": "BK-AAAAAA", "owner_id": "o", "runner_id": "r",
         "status": "accepted", "estimated_price_cents": 1510, "currency": "MYR"}
    t = rules.cancel(b, "o", "changed plans", datetime.now(UTC))
    assert [(topic, key, type_) for topic, key, type_, _ in t.events] == [
        ("booking.events", "b1", "booking.cancelled"), ("runner.events", "r", "runner.released")]
    assert t.events[0][3] == {"booking_id": "b1", "booking_number": "BK-AAAAAA",
                              "cancelled_by": "o", "reason": "changed plans", "owner_id": "o",
                              "runner_id": "r"}
