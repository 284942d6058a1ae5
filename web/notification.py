"""HTTP views of the notification domain."""

from aiohttp import web

routes = web.RouteTableDef()
