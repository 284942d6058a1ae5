"""The money sagas' rules (domain/sagas.py) and the reconciler's use case
(services.payment.drive_saga) through in-memory ports."""

from __future__ import annotations

import json
import uuid

from domain import sagas as rules
from domain.booking import NIL_UUID
from services import payment as payments
from tests.unit.payment_fakes import Fakes, make_fakes
from tests.unit.test_payment_service import OWNER, RUNNER, held

# ------------------------------------------------------------------ rules


def test_an_outcome_opens_the_step_it_owes() -> None:
    assert rules.opened_by("booking.completed", {"runner_id": RUNNER}) == rules.RELEASE
    assert rules.opened_by("booking.completed", {"runner_id": NIL_UUID}) is None
    assert rules.opened_by("booking.cancelled", {}) == rules.REFUND
    assert rules.opened_by("booking.delivery_confirmed", {"runner_id": RUNNER}) is None


def test_settling_events_close_and_a_failure_with_money_held_does_not() -> None:
    assert rules.closed_by("payment.escrow_released", {})
    assert rules.closed_by("payment.escrow_refunded", {})
    assert rules.closed_by("payment.failed", {"escrow_status": "failed"})
    assert not rules.closed_by("payment.failed", {"escrow_status": "held"})
    assert not rules.closed_by("payment.escrow_held", {})


def test_the_records_decide_what_is_owed() -> None:
    assert rules.owed_step("completed", RUNNER, "held") == rules.RELEASE
    assert rules.owed_step("completed", NIL_UUID, "held") is None
    assert rules.owed_step("cancelled", None, "held") == rules.REFUND
    assert rules.owed_step("completed", RUNNER, "released") is None
    assert rules.owed_step("delivered", RUNNER, "held") is None  # the owner has not confirmed
    assert rules.owed_step(None, None, None) is None


def test_overdue_and_kinds() -> None:
    saga = rules.open_saga(rules.RELEASE, "b", since=rules.event_time("2026-12-01T12:00:00Z", 0))
    assert not rules.overdue(saga, saga["since"] + 59.9, 60)
    assert rules.overdue(saga, saga["since"] + 60, 60)
    assert rules.event_time("not a time", 7.0) == 7.0
    assert rules.kind_of(rules.RELEASE, "succeeded") == rules.CAPTURED_NOT_RELEASED
    assert rules.kind_of(rules.RELEASE, "requires_capture") == rules.COMPLETED_BUT_HELD
    assert rules.kind_of(rules.RELEASE, None) == rules.COMPLETED_BUT_HELD
    assert rules.kind_of(rules.REFUND, None) == rules.CANCELLED_NOT_REFUNDED


def test_dead_letters_of_saga_events_raise_the_alert() -> None:
    consumers = {"payment-bookings", "payment-sagas"}
    completed = json.dumps({"type": "booking.completed", "data": {}})
    assert rules.dead_letter_alert({"consumer": "notifications", "value": completed},
                                   consumers) == ("notifications", "booking.completed")
    assert rules.dead_letter_alert({"consumer": "payment-bookings", "value": "{oops"},
                                   consumers) == ("payment-bookings", "undecodable")
    other = json.dumps({"type": "runner.location_updated"})
    assert rules.dead_letter_alert({"consumer": "runner-gps", "value": other}, consumers) is None


# ------------------------------------------------------------------ drive_saga


def _complete(f: Fakes, booking_id: str, status: str = "completed") -> None:
    f.world.bookings[booking_id].update(status=status, cancel_note="owner changed plans")


async def test_driving_a_completed_booking_releases_once() -> None:
    f = make_fakes()
    booking_id, payment = await held(f)
    _complete(f, booking_id)
    [owed] = await payments.owed_sagas(ports=f.ports)
    assert (owed["step"], owed["payment_id"]) == ("release", payment["id"])
    report = await payments.drive_saga(booking_id, ports=f.ports)
    assert (report.step, report.kind, report.outcome) == (
        "release", rules.COMPLETED_BUT_HELD, "done")
    again = await payments.drive_saga(booking_id, ports=f.ports)
    assert again.step is None and again.outcome == "settled"
    assert f.provider.effects("capture") == [f"capture-{payment['id']}"]
    assert await payments.owed_sagas(ports=f.ports) == []


async def test_a_capture_the_provider_took_is_reported_and_finished_with_its_key() -> None:
    f = make_fakes()
    booking_id, payment = await held(f)
    _complete(f, booking_id)
    # The capture reached the provider, Kilat's transaction never committed.
    await f.provider.capture(payment["stripe_payment_id"], f"capture-{payment['id']}")
    report = await payments.drive_saga(booking_id, ports=f.ports)
    assert (report.kind, report.outcome) == (rules.CAPTURED_NOT_RELEASED, "done")
    assert f.provider.effects("capture") == [f"capture-{payment['id']}"]
    assert f.world.payments[payment["id"]]["escrow_status"] == "released"
    assert f.world.payments[payment["id"]]["runner_id"] == RUNNER


async def test_driving_a_cancelled_booking_refunds_quietly_on_failure() -> None:
    f = make_fakes()
    booking_id, payment = await held(f)
    _complete(f, booking_id, "cancelled")
    f.provider.unreachable = 2  # the status lookup and the void
    failed = await payments.drive_saga(booking_id, ports=f.ports)
    assert (failed.kind, failed.outcome) == (rules.CANCELLED_NOT_REFUNDED, "failed")
    assert f.world.events("payment.failed") == []  # retried by the next look, not announced
    done = await payments.drive_saga(booking_id, ports=f.ports)
    assert done.outcome == "done"
    assert f.world.payments[payment["id"]]["refund_reason"] == "booking cancelled: owner changed plans"


async def test_nothing_is_owed_for_unknown_or_unsettled_bookings() -> None:
    f = make_fakes()
    assert (await payments.drive_saga(str(uuid.uuid4()), ports=f.ports)).step is None
    booking_id, _ = await held(f)  # accepted, not completed: nothing owed yet
    assert (await payments.drive_saga(booking_id, ports=f.ports)).step is None
    assert OWNER.user_id and f.provider.effects("capture") == []
