"""HTTP views of the booking domain."""

from aiohttp import web

routes = web.RouteTableDef()
