"""HTTP views of the review domain."""

from aiohttp import web

routes = web.RouteTableDef()
