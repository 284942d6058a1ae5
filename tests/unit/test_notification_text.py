"""The owner's "Payment released" text names the amount (rendered from the real template)."""

from __future__ import annotations

import json
from pathlib import Path

from domain.notification import OWNER, RUNNER, render, template_vars

TEMPLATE = json.loads((Path(__file__).resolve().parents[2] / "templates" / "notifications"
                       / "payment.escrow_released.json").read_text())
RELEASED = {"payment_id": "p1", "booking_id": "b1", "booking_number": "BK-ABC123",
            "amount_cents": 1510, "runner_id": "r1", "runner_payout_cents": 1284,
            "platform_fee_cents": 226, "currency": "MYR", "owner_id": "o1"}


def rendered(data: dict, role: str) -> dict[str, dict[str, str]]:
    values = template_vars("payment.escrow_released", data, role, "o1")
    return render(TEMPLATE, role, values, "payment.escrow_released").variants


def test_owner_payment_released_names_the_amount_on_every_channel() -> None:
    text = "Your payment of RM 15.10 for booking BK-ABC123 was released to the runner"
    variants = rendered(RELEASED, OWNER)
    assert variants["push"] == {"title": "Payment Released", "body": text}
    assert variants["sms"] == {"body": f"Kilat: {text}"}
    assert variants["email"]["html"] == f"<p>{text}</p>"
    assert rendered(RELEASED, RUNNER)["push"]["body"] == "You earned RM 12.84 for booking BK-ABC123"


def test_release_recorded_without_the_amount_uses_payout_plus_fee() -> None:
    legacy = {k: v for k, v in RELEASED.items() if k != "amount_cents"}
    assert rendered(legacy, OWNER)["push"]["body"] == (
        "Your payment of RM 15.10 for booking BK-ABC123 was released to the runner")
