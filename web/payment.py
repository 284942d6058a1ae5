"""HTTP views of the payment domain."""

from aiohttp import web

routes = web.RouteTableDef()
