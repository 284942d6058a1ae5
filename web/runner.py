"""HTTP views of the runner domain: runner profiles, presence, GPS, crates, nearby search."""

from __future__ import annotations

from aiohttp import web
from geoalchemy2.functions import ST_X, ST_Y
from geoalchemy2.types import Geometry
from sqlalchemy import select

from core.db import db
from models.runner import runner_locations
from tables.routing import routed_get
from tables.runners import position_of, runner_positions
from web.http import ok, path_uuid, require_role

routes = web.RouteTableDef()


@routes.get("/api/v1/admin/runners/{runner_id}/position")
async def admin_runner_position(request: web.Request) -> web.StreamResponse:
    """Ops view of a runner's live position: the table entry and the PostGIS row."""
    require_role(request, "admin")
    runner_id = path_uuid(request, "runner_id", "invalid runner ID")

    async def local() -> web.Response:
        live = position_of(runner_id)
        geom = runner_locations.c.location.cast(Geometry)
        row = await db.fetch_one(
            select(ST_Y(geom).label("latitude"), ST_X(geom).label("longitude"),
                   runner_locations.c.speed_kmh, runner_locations.c.recorded_at)
            .where(runner_locations.c.runner_id == runner_id))
        return ok({"runner_id": runner_id, "live": live.asdict() if live else None,
                   "stored": row})

    return await routed_get(request, runner_positions.name, runner_id, local)
