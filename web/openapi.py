"""OpenAPI 3 description of the public API, built from the routes the worker really serves.

`kilat openapi --out docs/openapi.json` writes it; the gateway serves the committed file at
`GET /openapi.json`; tests/test_openapi.py fails when the file and the routes drift apart.
Summaries come from each view's docstring, request bodies from the pydantic model the view
validates with `parse_body(request, Model)`.
"""

from __future__ import annotations

import inspect
import re
import sys
from typing import Any

import pydantic
from aiohttp import web

PUBLIC_PREFIXES = ("/api/", "/ws/")
_BODY_MODEL = re.compile(r"parse_body\(\s*request\s*,\s*([A-Za-z_][A-Za-z0-9_]*)")
_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")

ENVELOPE = {
    "type": "object",
    "properties": {"success": {"type": "boolean"}, "data": {}},
    "required": ["success"],
}
ERROR = {
    "type": "object",
    "properties": {"success": {"type": "boolean"}, "error": {"type": "string"},
                   "detail": {"type": "string"}},
    "required": ["error"],
}
PUBLIC_OPERATIONS = {
    ("POST", "/api/v1/auth/register"), ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"), ("POST", "/api/v1/auth/forgot-password"),
    ("POST", "/api/v1/auth/reset-password"), ("POST", "/api/v1/runners/apply"),
    ("GET", "/api/v1/subscriptions/plans"), ("GET", "/api/v1/tracking/shared/{token}"),
    ("GET", "/api/v1/reviews/runner/{id}"), ("GET", "/api/v1/reviews/shop/{id}"),
    ("GET", "/api/v1/reviews/rating/{type}/{id}"),
}


def _body_model(handler: Any) -> type[pydantic.BaseModel] | None:
    try:
        source = inspect.getsource(handler)
    except (OSError, TypeError):
        return None
    found = _BODY_MODEL.search(source)
    if not found:
        return None
    module = sys.modules.get(handler.__module__)
    model = getattr(module, found.group(1), None)
    return model if isinstance(model, type) and issubclass(model, pydantic.BaseModel) else None


def build_spec(app: web.Application) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {"Envelope": ENVELOPE, "Error": ERROR}
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if not path or not path.startswith(PUBLIC_PREFIXES) or route.method in ("HEAD", "*"):
            continue
        path = _PARAM.sub(lambda m: "{" + m.group(1) + "}", path)
        handler = route.handler
        doc = inspect.getdoc(handler) or ""
        op: dict[str, Any] = {
            "summary": doc.splitlines()[0] if doc else f"{route.method} {path}",
            "tags": [handler.__module__.rsplit(".", 1)[-1]],
            "parameters": [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in _PARAM.findall(path)
            ],
            "responses": {
                "200": {"description": "Success",
                        "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/Envelope"}}}},
                "400": {"description": "Bad request",
                        "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        }
        if (route.method, path) not in PUBLIC_OPERATIONS and not path.startswith("/ws/"):
            op["security"] = [{"bearer": []}]
            op["responses"]["401"] = {"description": "Not authenticated"}
        if path.startswith("/ws/") and "{token}" not in path:  # a share link's is in the path
            op["parameters"].append({"name": "token", "in": "query", "required": True,
                                     "schema": {"type": "string"}})
            op["responses"]["101"] = {"description": "WebSocket upgrade"}
        model = _body_model(handler)
        if model is not None:
            schemas[model.__name__] = model.model_json_schema(
                ref_template="#/components/schemas/{model}")
            for name, sub in schemas[model.__name__].pop("$defs", {}).items():
                schemas[name] = sub
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}
        paths.setdefault(path, {})[route.method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {"title": "Kilat API", "version": "1.0.0",
                 "description": "Pet delivery platform. All routes are served through the "
                                "gateway on :8080; responses use the {success,data} envelope."},
        "servers": [{"url": "http://localhost:8080"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "bearerFormat": "JWT"}},
        },
    }


def operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
