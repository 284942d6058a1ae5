"""A Stripe-compatible fake PaymentIntents API (aiohttp) for tests.

It answers like Stripe for the calls Kilat makes (create with manual capture, capture, cancel,
retrieve), records every request (path, headers, form, and which of its ports it came in on)
and honours `Idempotency-Key`: a repeated key gets the first response again without a second
effect. `decline_next` makes the next create fail like a declined card; `captures_down` makes
captures fail like an outage (503, no effect); `capture_gate`, when set, holds the answer to a
capture that took effect until the gate opens (`capture_taken` is set meanwhile), so a test can
freeze the caller between the provider's capture and its own commit.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]
    port: int = 0  # the fake's port the request came in on


@dataclass
class FakeStripe:
    secret: str = "sk_test_kilat_local"
    requests: list[Recorded] = field(default_factory=list)
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    decline_next: int = 0
    captures_down: bool = False
    capture_gate: asyncio.Event | None = None
    capture_taken: asyncio.Event = field(default_factory=asyncio.Event)
    _replies: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def calls(self, path_suffix: str = "", *, key: str | None = None) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith(path_suffix)
                and (key is None or r.headers.get("Idempotency-Key") == key)]

    # ------------------------------------------------------------ server

    async def start(self, port: int) -> None:
        app = web.Application()
        app.router.add_post("/v1/payment_intents", self._create)
        app.router.add_get("/v1/payment_intents/{id}", self._retrieve)
        app.router.add_post("/v1/payment_intents/{id}/capture", self._capture)
        app.router.add_post("/v1/payment_intents/{id}/cancel", self._cancel)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.port = port

    async def listen_also(self, port: int) -> None:
        """Serve the same fake on another port too (one per worker tells callers apart)."""
        assert self._runner is not None
        await web.TCPSite(self._runner, "127.0.0.1", port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------ plumbing

    @staticmethod
    def _error(status: int, type_: str, message: str, code: str = "") -> tuple[int, dict]:
        return status, {"error": {"type": type_, "code": code, "message": message}}

    async def _handle(self, request: web.Request, action) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        self.requests.append(Recorded(request.method, request.path, dict(request.headers), form,
                                      sockname[1] if sockname else 0))
        if request.headers.get("Authorization") != f"Bearer {self.secret}":
            status, body = self._error(401, "invalid_request_error", "Invalid API Key provided")
            return web.json_response(body, status=status)
        key = request.headers.get("Idempotency-Key")
        if request.method == "POST" and key and key in self._replies:
            status, body = self._replies[key]
            return web.json_response(body, status=status,
                                     headers={"Idempotent-Replayed": "true"})
        status, body = action(request, form)
        if request.method == "POST" and key and status < 500:
            self._replies[key] = (status, body)
        return web.json_response(body, status=status)

    # ------------------------------------------------------------ endpoints

    async def _create(self, request: web.Request) -> web.Response:
        def create(_req: web.Request, form: dict[str, str]) -> tuple[int, dict]:
            if not form.get("amount", "").isdigit() or int(form["amount"]) <= 0:
                return self._error(400, "invalid_request_error", "Invalid integer: amount")
            if self.decline_next:
                self.decline_next -= 1
                return self._error(402, "card_error", "Your card was declined.", "card_declined")
            intent_id = "pi_" + secrets.token_hex(12)
            manual = form.get("capture_method") == "manual"
            confirmed = form.get("confirm") == "true"
            status = ("requires_capture" if manual else "succeeded") if confirmed \
                else "requires_payment_method"
            intent = {
                "id": intent_id, "object": "payment_intent", "amount": int(form["amount"]),
                "amount_capturable": int(form["amount"]) if status == "requires_capture" else 0,
                "currency": form.get("currency", ""), "capture_method": form.get(
                    "capture_method", "automatic"), "status": status,
                "metadata": {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")},
            }
            self.intents[intent_id] = intent
            return 200, dict(intent)
        return await self._handle(request, create)

    def _find(self, request: web.Request) -> dict[str, Any] | None:
        return self.intents.get(request.match_info["id"])

    async def _retrieve(self, request: web.Request) -> web.Response:
        def get(req: web.Request, _form: dict) -> tuple[int, dict]:
            intent = self._find(req)
            if intent is None:
                return self._error(404, "invalid_request_error", "No such payment_intent")
            return 200, dict(intent)
        return await self._handle(request, get)

    async def _capture(self, request: web.Request) -> web.Response:
        def capture(req: web.Request, _form: dict) -> tuple[int, dict]:
            intent = self._find(req)
            if intent is None:
                return self._error(404, "invalid_request_error", "No such payment_intent")
            if intent["status"] != "requires_capture":
                return self._error(400, "invalid_request_error",
                                   f"This PaymentIntent could not be captured because it has a "
                                   f"status of {intent['status']}.", "payment_intent_unexpected_state")
            intent.update(status="succeeded", amount_received=intent["amount"],
                          amount_capturable=0, captures=intent.get("captures", 0) + 1)
            return 200, dict(intent)
        if self.captures_down:
            self.requests.append(Recorded(request.method, request.path, dict(request.headers),
                                          {}))
            status, body = self._error(503, "api_error", "The service is unavailable.")
            return web.json_response(body, status=status)
        response = await self._handle(request, capture)
        if self.capture_gate is not None:
            self.capture_taken.set()
            await self.capture_gate.wait()
        return response

    async def _cancel(self, request: web.Request) -> web.Response:
        def cancel(req: web.Request, form: dict) -> tuple[int, dict]:
            intent = self._find(req)
            if intent is None:
                return self._error(404, "invalid_request_error", "No such payment_intent")
            if intent["status"] in ("succeeded", "canceled"):
                return self._error(400, "invalid_request_error",
                                   f"You cannot cancel this PaymentIntent because it has a "
                                   f"status of {intent['status']}.", "payment_intent_unexpected_state")
            intent.update(status="canceled", amount_capturable=0,
                          cancellation_reason=form.get("cancellation_reason"))
            return 200, dict(intent)
        return await self._handle(request, cancel)
