"""HTTP views of the identity domain."""

from aiohttp import web

routes = web.RouteTableDef()
