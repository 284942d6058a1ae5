"""HTTP views of the review domain (reference §2.7).

Fixed against the reference: rule violations are 4xx (not 500), reviews need a completed, paid
booking the caller took part in, and the reviewee must be the other party (or a shop). See
docs/reviews.md.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

import pydantic
from aiohttp import web

from core.db import Row, db
from core.outbox import emit
from domain import review as rules
from models import events as ev
from stores import booking as booking_store
from stores import payment as payment_store
from stores import review as store
from stores import runner as runner_store
from web.http import (
    ApiError,
    Body,
    authenticate,
    bad_request,
    conflict,
    created,
    not_found,
    ok,
    page_params,
    paginated,
    parse_body,
    path_uuid,
)

routes = web.RouteTableDef()


class CreateReviewRequest(Body):
    booking_id: uuid.UUID
    reviewee_id: uuid.UUID
    reviewee_type: Literal["runner", "shop", "owner"]
    rating: int = 0
    comment: str = pydantic.Field(default="", max_length=2000)
    photo_urls: list[str] = pydantic.Field(default_factory=list, max_length=10)


def review_dto(row: Row) -> dict[str, Any]:
    return {k: row[k] for k in ("id", "booking_id", "reviewer_id", "reviewee_id",
                                "reviewee_type", "rating", "comment", "photo_urls",
                                "created_at")}


@routes.post("/api/v1/reviews")
async def create_review(request: web.Request) -> web.Response:
    user = authenticate(request)
    body = await parse_body(request, CreateReviewRequest)
    error = rules.rating_error(body.rating)
    if error:
        raise bad_request(error)
    booking_id, reviewee_id = str(body.booking_id), str(body.reviewee_id)
    if reviewee_id == user.user_id:
        raise ApiError(400, "you cannot review yourself", "")
    async with db.transaction() as conn:
        booking = await booking_store.get_booking(conn, booking_id)
        if booking is None:
            raise not_found("Booking", booking_id)
        try:
            rules.check_review(booking, user.user_id, reviewee_id, body.reviewee_type,
                               paid=await payment_store.booking_paid(conn, booking_id))
        except rules.ReviewRejected as exc:
            raise ApiError(exc.status, exc.message, "") from None
        if body.reviewee_type == "shop" and await runner_store.get_shop(conn, reviewee_id) is None:
            raise not_found("PetShop", reviewee_id)
        row = await store.insert_review(conn, {
            "booking_id": booking_id, "reviewer_id": user.user_id, "reviewee_id": reviewee_id,
            "reviewee_type": body.reviewee_type, "rating": body.rating,
            "comment": body.comment, "photo_urls": body.photo_urls,
        })
        if row is None:
            raise conflict("you have already reviewed this booking")
        await emit(conn, ev.REVIEW_EVENTS, reviewee_id, rules.SOURCE, "review.submitted", {
            "review_id": row["id"], "booking_id": booking_id, "reviewer_id": user.user_id,
            "reviewee_id": reviewee_id, "reviewee_type": body.reviewee_type,
            "rating": body.rating,
        })
    return created(review_dto(row))


async def _list(request: web.Request, query) -> web.Response:
    page, limit = page_params(request, default_limit=20, max_limit=100)
    async with db.connect() as conn:
        rows, total = await query(conn, limit, (page - 1) * limit)
    return paginated([review_dto(r) for r in rows], total, page, limit)


@routes.get("/api/v1/reviews/me")
async def my_reviews(request: web.Request) -> web.Response:
    user = authenticate(request)
    return await _list(request, lambda conn, limit, offset:
                       store.by_reviewer(conn, user.user_id, limit, offset))


@routes.get("/api/v1/reviews/runner/{id}")
async def runner_reviews(request: web.Request) -> web.Response:
    ident = path_uuid(request, "id", "invalid runner ID")

    async def query(conn, limit, offset):
        return await store.for_reviewee(conn, "runner", await store.runner_user_id(conn, ident),
                                        limit, offset)
    return await _list(request, query)


@routes.get("/api/v1/reviews/shop/{id}")
async def shop_reviews(request: web.Request) -> web.Response:
    ident = path_uuid(request, "id", "invalid shop ID")
    return await _list(request, lambda conn, limit, offset:
                       store.for_reviewee(conn, "shop", ident, limit, offset))


@routes.get("/api/v1/reviews/rating/{type}/{id}")
async def rating(request: web.Request) -> web.Response:
    reviewee_type = request.match_info["type"]
    if reviewee_type not in rules.REVIEWEE_TYPES:
        raise bad_request("invalid reviewee type")
    ident = path_uuid(request, "id", "invalid reviewee ID")
    async with db.connect() as conn:
        if reviewee_type == "runner":
            ident = await store.runner_user_id(conn, ident)
        total, count = await store.rating_of(conn, reviewee_type, ident)
    return ok({"average_rating": rules.average(total, count), "total_reviews": count})
