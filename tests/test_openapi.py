"""The committed OpenAPI document matches the served routes and the gateway routes them all."""

from __future__ import annotations

import json
import re

import kilat
from gateway.routes import match
from tests.platform import ROOT
from web.openapi import build_spec, operations

DOC = ROOT / "docs" / "openapi.json"


def committed() -> dict:
    return json.loads(DOC.read_text())


def test_document_lists_exactly_the_served_operations() -> None:
    live = build_spec(kilat.app.web.web_app)
    doc = committed()
    missing = operations(live) - operations(doc)
    stale = operations(doc) - operations(live)
    assert not missing and not stale, (
        f"regenerate with `kilat openapi`: undocumented {sorted(missing)}, stale {sorted(stale)}")
    for path, ops in live["paths"].items():
        for method, op in ops.items():
            assert ("requestBody" in op) == ("requestBody" in doc["paths"][path][method]), (
                method, path)


def test_every_documented_path_is_routed_by_the_gateway() -> None:
    for path in committed()["paths"]:
        concrete = re.sub(r"{[^}]+}", "x", path)
        assert match(concrete) is not None, path


async def test_gateway_serves_the_document(platform, http) -> None:
    async with http.get(platform.base_url + "/openapi.json") as resp:
        assert resp.status == 200
        assert await resp.json() == committed()


async def test_every_operation_reaches_a_view_through_the_gateway(platform, http) -> None:
    """No documented operation falls through to a 404/405 of the router."""
    for path, ops in committed()["paths"].items():
        if path.startswith("/ws/"):
            continue
        concrete = re.sub(r"{[^}]+}", "00000000-0000-0000-0000-000000000000", path)
        for method in ops:
            async with http.request(method.upper(), platform.base_url + concrete,
                                    json={}) as resp:
                text = await resp.text()
                assert resp.status != 405, (method, path)
                assert text not in ("404 page not found", ) or resp.status != 404, (method, path)
                assert resp.status < 500, (method, path, resp.status, text[:200])
