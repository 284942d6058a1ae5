"""A fake Twilio Messages API (aiohttp) for tests: records every SMS the twilio client sends
(`POST /2010-04-01/Accounts/<sid>/Messages.json`, basic auth) and answers like Twilio."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Sms:
    account_sid: str
    to: str
    from_: str
    body: str
    received_at: float


@dataclass
class FakeTwilio:
    account_sid: str = "ACkilatlocal"
    auth_token: str = "kilat-local"
    messages: list[Sms] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def to(self, number: str) -> list[Sms]:
        return [m for m in self.messages if m.to == number]

    async def _create(self, request: web.Request) -> web.Response:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return web.json_response({"code": 20003, "message": "Authenticate", "status": 401},
                                     status=401)
        sid = request.match_info["sid"]
        form = await request.post()
        sms = Sms(sid, str(form.get("To", "")), str(form.get("From", "")),
                  str(form.get("Body", "")), time.time())
        self.messages.append(sms)
        return web.json_response({
            "sid": f"SM{len(self.messages):032d}", "account_sid": sid, "to": sms.to,
            "from": sms.from_, "body": sms.body, "status": "queued", "num_segments": "1",
            "direction": "outbound-api", "api_version": "2010-04-01",
        }, status=201)

    async def start(self) -> FakeTwilio:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._create)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
