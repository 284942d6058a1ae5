"""HTTP views of the tracking domain."""

from aiohttp import web

routes = web.RouteTableDef()
