"""`kilat openapi --out docs/openapi.json`: write the OpenAPI document of the served routes."""

from __future__ import annotations

import json
from pathlib import Path

from faust.cli import option

from kilat import app
from web.openapi import build_spec


@app.command(option("--out", default="docs/openapi.json", help="Where to write the document"))
async def openapi(self, out: str) -> None:
    """Write the OpenAPI 3 document of every public route."""
    spec = build_spec(app.web.web_app)
    Path(out).write_text(json.dumps(spec, indent=2, sort_keys=False) + "\n")
    self.say(f"wrote {len(spec['paths'])} paths to {out}")
