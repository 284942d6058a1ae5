"""Agents of the review domain.

* `review.events` `review.submitted` → recompute the reviewee's average rating into the runner
  domain's `runners.rating` (by user id) or `pet_shops.rating`; owners have no stored rating.
* `booking.events` `booking.completed` → `runners.total_trips + 1` for the booking's runner.
Both go through `core.consuming.consume`, so a redelivered event has no second effect.
"""

from __future__ import annotations

from core.consuming import consume
from core.db import Connection
from domain import review as rules
from domain.notification import valid_uuid
from kilat import app, booking_events, review_events
from models.events import CloudEvent, MalformedEvent, require
from stores import review as store
from stores import runner as runner_store


async def update_rating(conn: Connection, event: CloudEvent) -> None:
    data = event.data
    require(data, "reviewee_id", "reviewee_type")
    reviewee_id, reviewee_type = data["reviewee_id"], data["reviewee_type"]
    if not valid_uuid(reviewee_id) or reviewee_type not in rules.REVIEWEE_TYPES:
        raise MalformedEvent("reviewee_id or reviewee_type is invalid")
    total, count = await store.rating_of(conn, reviewee_type, reviewee_id)
    if reviewee_type == "runner":
        await runner_store.set_runner_rating(conn, reviewee_id, rules.average(total, count))
    elif reviewee_type == "shop":
        await runner_store.set_shop_rating(conn, reviewee_id, rules.average(total, count))


async def count_trip(conn: Connection, event: CloudEvent) -> None:
    runner_id = event.data.get("runner_id")
    if valid_uuid(runner_id):  # all-zero / missing: completed without a runner
        await runner_store.increment_total_trips(conn, runner_id)


@app.agent(review_events, name="kilat.review-ratings", concurrency=1)
async def ratings_on_reviews(stream):
    await consume(stream, "review-ratings", {"review.submitted": update_rating})


@app.agent(booking_events, name="kilat.review-trips", concurrency=1)
async def trips_on_bookings(stream):
    await consume(stream, "review-trips", {"booking.completed": count_trip})
