"""Review queries shared by the review views and agents.

Aggregates land in the runner domain's tables through `stores.runner` (`set_runner_rating`,
`set_shop_rating`, `increment_total_trips`); only the runner-id lookup below reads `runners`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from core.db import Connection, Row
from models.review import reviews
from models.runner import runners

DTO_COLUMNS = [reviews.c[n] for n in ("id", "booking_id", "reviewer_id", "reviewee_id",
                                       "reviewee_type", "rating", "comment", "photo_urls",
                                       "created_at")]


async def insert_review(conn: Connection, values: dict[str, Any]) -> Row | None:
    """Store a review; None when this reviewer already reviewed this booking."""
    stmt = (pg_insert(reviews).values(**values)
            .on_conflict_do_nothing(constraint="uq_reviews_booking_reviewer")
            .returning(*DTO_COLUMNS))
    return await conn.fetch_one(stmt)


async def _page(conn: Connection, where: Any, limit: int, offset: int) -> tuple[list[Row], int]:
    rows = await conn.fetch_all(select(*DTO_COLUMNS).where(where)
                                .order_by(reviews.c.created_at.desc(), reviews.c.id.desc())
                                .limit(limit).offset(offset))
    total = await conn.scalar(select(func.count()).select_from(reviews).where(where))
    return rows, int(total or 0)


async def by_reviewer(conn: Connection, reviewer_id: str, limit: int, offset: int):
    return await _page(conn, reviews.c.reviewer_id == reviewer_id, limit, offset)


async def for_reviewee(conn: Connection, reviewee_type: str, reviewee_id: str, limit: int,
                       offset: int):
    where = (reviews.c.reviewee_type == reviewee_type) & (reviews.c.reviewee_id == reviewee_id)
    return await _page(conn, where, limit, offset)


async def rating_of(conn: Connection, reviewee_type: str, reviewee_id: str) -> tuple[Any, int]:
    """(sum of ratings, number of reviews) of a reviewee."""
    row = await conn.fetch_one(
        select(func.coalesce(func.sum(reviews.c.rating), 0).label("total"),
               func.count().label("n"))
        .where(reviews.c.reviewee_type == reviewee_type, reviews.c.reviewee_id == reviewee_id))
    return row["total"], int(row["n"])


async def runner_user_id(conn: Connection, ident: str) -> str:
    """Runners are reviewed by user id; a runner profile id (RunnerDTO.id) is mapped to it."""
    user_id = await conn.scalar(select(runners.c.user_id).where(runners.c.id == ident))
    return str(user_id) if user_id else ident

