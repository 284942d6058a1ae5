"""Reviews through the gateway on a real booking journey: who may review whom, the one-review
rule, review.submitted on the broker, and the aggregates (runner rating and trips, shop rating)
kept by the review agents."""

from __future__ import annotations

import random
import uuid

from models.events import new_event
from tests.platform import Platform, wait_until
from tests.test_booking import book

R = "/api/v1/reviews"
VEHICLE = {"vehicle_type": "car", "vehicle_plate": "WXY 1234", "vehicle_model": "Perodua Myvi",
           "vehicle_year": 2021, "air_conditioned": True}
REVIEW_KEYS = {"id", "booking_id", "reviewer_id", "reviewee_id", "reviewee_type", "rating",
               "comment", "photo_urls", "created_at"}


def rating_error(tag: str) -> tuple[int, dict]:
    return 400, {"success": False, "error": "Key: 'CreateReviewRequest.Rating' Error:Field "
                                            f"validation for 'Rating' failed on the '{tag}' tag"}


def rule(status: int, error: str) -> tuple[int, dict]:
    return status, {"success": False, "error": error, "detail": ""}


async def completed_booking(owner, runner) -> dict:
    """A booking taken through the API: request → pay → accept → pickup → deliver → confirm."""
    data = await book(owner)
    path = f"/api/v1/bookings/{data['id']}"
    status, body = await owner.post("/api/v1/payments/initiate", {"booking_id": data["id"]})
    assert status == 201, body
    for actor, action in ((runner, "accept"), (runner, "pickup"), (runner, "deliver"),
                          (owner, "confirm")):
        status, body = await actor.post(f"{path}/{action}")
        assert status == 200, (action, body)
    return {**data, "status": "completed"}


def runner_row(platform: Platform, user_id: str) -> dict:
    [row] = platform.sql("SELECT id, rating::float AS rating, total_trips FROM runners "
                         "WHERE user_id = %s", (user_id,))
    return row


async def test_review_rules_rating_and_trip_aggregates(platform: Platform, new_client):
    owner, runner, stranger = (await new_client("owner"), await new_client("runner"),
                               await new_client("runner"))
    status, body = await runner.post("/api/v1/runners", VEHICLE)
    assert status == 201, body
    profile_id = body["data"]["id"]
    lat, lng = 5.0 + random.random(), 100.5 + random.random() / 2
    assert (await runner.post("/api/v1/runners/me/online",
                              {"latitude": lat, "longitude": lng}))[0] == 200
    oid, rid = owner.user["id"], runner.user["id"]

    open_booking = await book(owner)
    assert (await runner.post(f"/api/v1/bookings/{open_booking['id']}/accept"))[0] == 200
    review = {"booking_id": open_booking["id"], "reviewee_id": rid, "reviewee_type": "runner",
              "rating": 5, "comment": "Great", "photo_urls": ["https://img.test/1.jpg"]}
    assert await owner.post(R, review) == rule(400, "only completed bookings can be reviewed")

    first = await completed_booking(owner, runner)
    review["booking_id"] = first["id"]
    assert await stranger.post(R, {**review, "reviewee_id": oid, "reviewee_type": "owner"}) == rule(
        403, "only the owner or the runner of a booking can review it")
    assert await owner.post(R, {**review, "rating": 0}) == rating_error("required")
    assert await owner.post(R, {**review, "rating": -1}) == rating_error("min")
    assert await owner.post(R, {**review, "rating": 6}) == rating_error("max")
    assert await owner.post(R, {**review, "reviewee_id": oid}) == rule(
        400, "you cannot review yourself")
    assert await owner.post(R, {**review, "reviewee_id": stranger.user["id"]}) == rule(
        400, "reviewee must be the runner of this booking")
    status, body = await owner.post(R, {**review, "reviewee_type": "pilot"})
    assert status == 400 and "'oneof' tag" in body["error"]
    status, body = await owner.post(R, {k: v for k, v in review.items() if k != "booking_id"})
    assert status == 400 and "'BookingId' failed on the 'required' tag" in body["error"]
    missing = str(uuid.uuid4())
    assert (await owner.post(R, {**review, "booking_id": missing}))[0] == 404
    assert (await owner.post(R, review, token=""))[0] == 401

    status, body = await owner.post(R, review)
    assert status == 201, body
    created = body["data"]
    assert set(created) == REVIEW_KEYS
    assert {k: created[k] for k in ("booking_id", "reviewer_id", "reviewee_id", "reviewee_type",
                                    "rating", "comment", "photo_urls")} == {
        "booking_id": first["id"], "reviewer_id": oid, "reviewee_id": rid,
        "reviewee_type": "runner", "rating": 5, "comment": "Great",
        "photo_urls": ["https://img.test/1.jpg"]}
    assert await owner.post(R, {**review, "rating": 1}) == rule(
        409, "you have already reviewed this booking")
    [event] = await platform.wait_event("review.events", "review.submitted",
                                        review_id=created["id"])
    assert event["_key"] == rid and event["source"] == "service-review"
    assert {k: v for k, v in event["data"].items() if k != "occurred_at"} == {
        "review_id": created["id"], "booking_id": first["id"], "reviewer_id": oid,
        "reviewee_id": rid, "reviewee_type": "runner", "rating": 5}

    # The runner reviews the owner, and only the owner.
    back = {"booking_id": first["id"], "reviewee_id": oid, "reviewee_type": "owner", "rating": 4}
    assert await runner.post(R, {**back, "reviewee_type": "runner"}) == rule(
        400, "the runner can only review the owner of this booking")
    assert (await runner.post(R, back))[0] == 201

    second = await completed_booking(owner, runner)
    assert (await owner.post(R, {**review, "booking_id": second["id"], "rating": 2}))[0] == 201

    async def aggregated():
        row = runner_row(platform, rid)
        return row["rating"] == 3.5 and row["total_trips"] == 2 and row
    await wait_until(aggregated, 30, what="runner rating 3.5 over 2 trips")

    expected = {"success": True, "data": {"average_rating": 3.5, "total_reviews": 2}}
    assert await owner.get(f"{R}/rating/runner/{rid}") == (200, expected)
    assert await owner.get(f"{R}/rating/runner/{rid}", token="") == (200, expected)  # public
    assert (await owner.get(f"{R}/runner/{rid}", token=""))[0] == 200
    assert (await owner.get(f"{R}/me", token=""))[0] == 401
    assert await owner.get(f"{R}/rating/runner/{profile_id}") == (200, expected)
    assert (await owner.get(f"{R}/rating/owner/{oid}"))[1]["data"] == {
        "average_rating": 4.0, "total_reviews": 1}
    assert (await owner.get(f"{R}/rating/shop/{uuid.uuid4()}"))[1]["data"] == {
        "average_rating": 0.0, "total_reviews": 0}
    assert await owner.get(f"{R}/rating/pilot/{rid}") == (
        400, {"success": False, "error": "invalid reviewee type"})
    assert await owner.get(f"{R}/runner/nope") == (
        400, {"success": False, "error": "invalid runner ID"})

    status, body = await owner.get(f"{R}/runner/{rid}?limit=1")
    assert status == 200 and [r["rating"] for r in body["data"]] == [2]
    assert body["pagination"] == {"total": 2, "page": 1, "limit": 1, "total_pages": 2}
    status, body = await owner.get(f"{R}/me")
    assert [r["booking_id"] for r in body["data"]] == [second["id"], first["id"]]
    status, body = await runner.get(f"{R}/me")
    assert [r["reviewee_type"] for r in body["data"]] == ["owner"]

    # What owners see when they look for a runner.
    status, body = await owner.get(f"/api/v1/runners/nearby?latitude={lat}&longitude={lng}")
    assert status == 200
    [found] = [r for r in body["data"] if r["user_id"] == rid]
    assert found["rating"] == 3.5 and found["total_trips"] == 2


async def test_trip_count_is_applied_once_per_completed_event(platform: Platform, new_client):
    owner, runner = await new_client("owner"), await new_client("runner")
    assert (await runner.post("/api/v1/runners", VEHICLE))[0] == 201
    rid = runner.user["id"]
    done = await completed_booking(owner, runner)

    async def trips(n: int):
        return runner_row(platform, rid)["total_trips"] == n
    await wait_until(lambda: trips(1), 30, what="one trip")

    # Replay the very same booking.completed, then a new one on the same partition.
    [completed] = await platform.wait_event("booking.events", "booking.completed",
                                            booking_id=done["id"])
    replay = {k: v for k, v in completed.items() if not k.startswith("_")}
    await platform.produce("booking.events", done["id"], replay)
    fresh = new_event("service-booking", "booking.completed", {
        **completed["data"], "booking_id": done["id"]})
    await platform.produce("booking.events", done["id"], fresh.to_json())
    await wait_until(lambda: trips(2), 30, what="the new event counted")
    assert platform.sql("SELECT count(*) AS n FROM processed_events WHERE consumer = "
                        "'review-trips' AND event_id = %s", (completed["id"],)) == [{"n": 1}]
    assert runner_row(platform, rid)["total_trips"] == 2


async def test_owner_reviews_a_shop_and_its_rating_follows(platform: Platform, new_client):
    owner, runner, shop = (await new_client("owner"), await new_client("runner"),
                           await new_client("shop"))
    status, body = await shop.post("/api/v1/petshops", {
        "name": f"Shop {uuid.uuid4().hex[:6]}", "category": "grooming",
        "address": "1 Jalan Test, Kuala Lumpur", "latitude": 3.1466, "longitude": 101.7108})
    assert status == 201, body
    shop_id = body["data"]["id"]
    done = await completed_booking(owner, runner)
    review = {"booking_id": done["id"], "reviewee_id": shop_id, "reviewee_type": "shop",
              "rating": 4}
    missing = str(uuid.uuid4())
    assert await owner.post(R, {**review, "reviewee_id": missing}) == (404, {
        "success": False, "error": "PetShop not found",
        "detail": f"PetShop with id '{missing}' was not found"})
    status, body = await owner.post(R, review)
    assert status == 201, body

    async def rated():
        status, body = await owner.get(f"/api/v1/petshops/{shop_id}")
        return status == 200 and body["data"]["rating"] == 4.0
    await wait_until(rated, 30, what="shop rating 4.0")
    status, body = await owner.get(f"{R}/shop/{shop_id}")
    assert status == 200 and [r["id"] for r in body["data"]] == [
        r["id"] for r in (await owner.get(f"{R}/me"))[1]["data"]]
    assert (await owner.get(f"{R}/rating/shop/{shop_id}"))[1]["data"] == {
        "average_rating": 4.0, "total_reviews": 1}


async def test_only_paid_bookings_can_be_reviewed(platform: Platform, new_client, new_admin):
    """A booking whose escrow was refunded before the owner confirmed is completed but unpaid:
    neither side can review it."""
    owner, runner = await new_client("owner"), await new_client("runner")
    data = await book(owner)
    path = f"/api/v1/bookings/{data['id']}"
    status, body = await owner.post("/api/v1/payments/initiate", {"booking_id": data["id"]})
    assert status == 201, body
    for action in ("accept", "pickup", "deliver"):
        assert (await runner.post(f"{path}/{action}"))[0] == 200
    status, body = await new_admin.post(f"/api/v1/payments/{body['data']['id']}/refund",
                                        {"reason": "chargeback"})
    assert status == 200 and body["data"]["escrow_status"] == "refunded", body
    assert (await owner.post(f"{path}/confirm"))[1]["data"]["status"] == "completed"
    review = {"booking_id": data["id"], "reviewee_id": runner.user["id"],
              "reviewee_type": "runner", "rating": 5}
    assert await owner.post(R, review) == rule(400, "only paid bookings can be reviewed")
    assert await runner.post(R, {**review, "reviewee_id": owner.user["id"],
                                 "reviewee_type": "owner"}) == rule(
        400, "only paid bookings can be reviewed")
