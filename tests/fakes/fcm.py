"""A fake FCM HTTP v1 API and OAuth token endpoint (aiohttp) for tests.

pyfcm + google-auth talk to it as to Google: `POST /token` (the service account's `token_uri`,
JWT-bearer grant) returns an access token; `POST /v1/projects/<project>/messages:send` with that
bearer token records the message. `unregistered` tokens get FCM's 404 (UNREGISTERED);
`fail_next[token] = n` answers the next n sends to that token with a 500.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ACCESS_TOKEN = "fake-fcm-access-token"


@dataclass
class PushMessage:
    project: str
    token: str
    title: str
    body: str
    data: dict[str, str]
    received_at: float


@dataclass
class FakeFCM:
    messages: list[PushMessage] = field(default_factory=list)
    token_requests: int = 0
    unregistered: set[str] = field(default_factory=set)
    fail_next: dict[str, int] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def to(self, token: str) -> list[PushMessage]:
        return [m for m in self.messages if m.token == token]

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" or not form.get(
                "assertion"):
            return web.json_response({"error": "invalid_grant"}, status=400)
        self.token_requests += 1
        return web.json_response({"access_token": ACCESS_TOKEN, "expires_in": 3600,
                                  "token_type": "Bearer"})

    async def _send(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {ACCESS_TOKEN}":
            return web.json_response({"error": {"code": 401, "status": "UNAUTHENTICATED"}},
                                     status=401)
        payload: dict[str, Any] = await request.json()
        msg = payload.get("message") or {}
        token = msg.get("token", "")
        self.attempts[token] = self.attempts.get(token, 0) + 1
        if token in self.unregistered:
            return web.json_response({"error": {"code": 404, "status": "NOT_FOUND",
                                                "message": "Requested entity was not found."}},
                                     status=404)
        if self.fail_next.get(token, 0) > 0:
            self.fail_next[token] -= 1
            return web.json_response({"error": {"code": 500, "status": "INTERNAL"}}, status=500)
        note = msg.get("notification") or {}
        project = request.match_info["project"]
        self.messages.append(PushMessage(project, token, note.get("title", ""),
                                         note.get("body", ""), msg.get("data") or {},
                                         time.time()))
        return web.json_response({"name": f"projects/{project}/messages/{len(self.messages)}"})

    async def start(self) -> FakeFCM:
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_post("/v1/projects/{project}/messages:send", self._send)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    def write_service_account(self, path: Path, project_id: str = "kilat-test") -> Path:
        """A service-account JSON file (fresh RSA key) whose token_uri is this fake."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        path.write_text(json.dumps({
            "type": "service_account", "project_id": project_id, "private_key_id": "fake",
            "private_key": pem, "client_email": f"kilat@{project_id}.iam.gserviceaccount.com",
            "client_id": "1", "token_uri": f"{self.url}/token",
        }))
        return path
