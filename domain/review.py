"""Pure rules of the review domain (reference §2.7/§3.7, with DESIGN's fixes): who may review
whom for a booking. No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REVIEWEE_TYPES = ("runner", "shop", "owner")
MIN_RATING, MAX_RATING = 1, 5
SOURCE = "service-review"
REVIEWABLE_STATUS = "completed"


@dataclass
class ReviewRejected(Exception):
    """A review that breaks a rule: HTTP status and the error text."""

    status: int
    message: str


def check_review(booking: dict[str, Any], reviewer_id: str, reviewee_id: str,
                 reviewee_type: str, *, paid: bool = True) -> None:
    """Raise ReviewRejected unless `reviewer_id` may review `reviewee_id` for `booking`.

    * only the booking's owner or assigned runner (403), only once it is completed (400) and
      paid (`paid`: its escrow holds or released the owner's money; 400);
    * the owner reviews the runner of the booking, or a shop; the runner reviews the owner;
    * nobody reviews themselves (400; checked by the caller before the booking is loaded too).
    """
    if reviewer_id == reviewee_id:
        raise ReviewRejected(400, "you cannot review yourself")
    owner = str(booking.get("owner_id") or "")
    runner = str(booking.get("runner_id") or "")
    if reviewer_id not in (owner, runner):
        raise ReviewRejected(403, "only the owner or the runner of a booking can review it")
    if booking.get("status") != REVIEWABLE_STATUS:
        raise ReviewRejected(400, "only completed bookings can be reviewed")
    if not paid:
        raise ReviewRejected(400, "only paid bookings can be reviewed")
    if reviewer_id == owner:
        if reviewee_type == "runner" and reviewee_id != runner:
            raise ReviewRejected(400, "reviewee must be the runner of this booking")
        if reviewee_type == "owner":
            raise ReviewRejected(400, "the owner can review the runner or a shop")
    else:
        if reviewee_type != "owner" or reviewee_id != owner:
            raise ReviewRejected(400, "the runner can only review the owner of this booking")


def rating_error(rating: int) -> str | None:
    """Go-validator style text for a rating outside 1..5 (0 = missing, as Go binding sees it)."""
    if rating == 0:
        tag = "required"
    elif rating < MIN_RATING:
        tag = "min"
    elif rating > MAX_RATING:
        tag = "max"
    else:
        return None
    return (f"Key: 'CreateReviewRequest.Rating' Error:Field validation for 'Rating' failed on "
            f"the '{tag}' tag")


def average(total: Any, count: int) -> float:
    """Average rating rounded to 2 places (0 when there are no reviews)."""
    return round(float(total) / count, 2) if count else 0.0
