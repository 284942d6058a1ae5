"""Stripe adapter: PaymentIntents with manual capture, over HTTP (aiohttp), form-encoded like
Stripe's API, with an `Idempotency-Key` on every write so a retried saga step never charges or
refunds twice.

`STRIPE_API_BASE=mock` (the development default) simulates intents in process instead, with
deterministic ids `pi_mock_<8 hex>` derived from the idempotency key.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp

from core.config import settings

log = logging.getLogger(__name__)

MOCK = "mock"
ATTEMPTS = 3


class StripeError(Exception):
    """The provider refused the request or could not be reached. `declined` is True when the
    provider answered that the card was refused (HTTP 402): a final answer about the customer's
    money, as opposed to the provider being unavailable."""

    def __init__(self, message: str, *, declined: bool = False) -> None:
        super().__init__(message)
        self.declined = declined


@dataclass(frozen=True)
class PaymentIntent:
    id: str
    status: str
    amount: int
    currency: str


def _intent(body: dict[str, Any]) -> PaymentIntent:
    try:
        return PaymentIntent(str(body["id"]), str(body["status"]), int(body.get("amount") or 0),
                             str(body.get("currency") or ""))
    except (KeyError, TypeError, ValueError) as exc:
        raise StripeError(f"unexpected response from provider: {body!r}") from exc


class Stripe:
    """One client per process; the aiohttp session is opened lazily on the running loop."""

    def __init__(self, base: str | None = None, secret: str | None = None,
                 timeout_s: float = 10.0) -> None:
        cfg = settings()
        self.base = (base or cfg.stripe_api_base).rstrip("/")
        self.secret = secret or cfg.stripe_secret_key
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._mock: dict[str, PaymentIntent] = {}

    @property
    def mocked(self) -> bool:
        return self.base == MOCK

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _post(self, path: str, form: dict[str, str], idempotency_key: str) -> dict[str, Any]:
        return await self._request("POST", path, form, {"Idempotency-Key": idempotency_key})

    async def _get(self, path: str) -> dict[str, Any]:
        return await self._request("GET", path, None, {})

    async def _request(self, method: str, path: str, form: dict[str, str] | None,
                       extra_headers: dict[str, str]) -> dict[str, Any]:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        headers = {"Authorization": f"Bearer {self.secret}", **extra_headers}
        error = "no attempt made"
        # Retrying is safe: a write's idempotency key makes the provider answer a repeat with
        # the first answer. Only transport errors and 5xx/429 are retried; 4xx are final.
        for attempt in range(ATTEMPTS):
            if attempt:
                await asyncio.sleep(0.2 * 2 ** attempt)
            try:
                async with self._session.request(method, self.base + path, data=form,
                                                 headers=headers) as resp:
                    try:
                        body = await resp.json(content_type=None)
                    except ValueError:
                        body = {}
                    if resp.status < 300 and isinstance(body, dict):
                        return body
                    message = (body.get("error") or {}).get("message") if isinstance(
                        body, dict) and isinstance(body.get("error"), dict) else None
                    error = f"HTTP {resp.status}: {message or resp.reason}"
                    if resp.status < 500 and resp.status != 429:
                        raise StripeError(error, declined=resp.status == 402)
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            log.warning("stripe %s %s attempt %d failed: %s", method, path, attempt + 1, error)
        raise StripeError(error)

    # ------------------------------------------------------------ operations

    async def create_intent(self, amount_cents: int, currency: str, booking_id: str,
                            idempotency_key: str) -> PaymentIntent:
        """An authorised, uncaptured intent (capture_method=manual, confirmed): the escrow hold."""
        if self.mocked:
            digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:8]
            intent = self._mock.setdefault(idempotency_key, PaymentIntent(
                f"pi_mock_{digest}", "requires_capture", amount_cents, currency.lower()))
            return intent
        body = await self._post("/v1/payment_intents", {
            "amount": str(amount_cents), "currency": currency.lower(),
            "capture_method": "manual", "confirm": "true", "payment_method": "pm_card_visa",
            "metadata[booking_id]": booking_id,
        }, idempotency_key)
        return _intent(body)

    async def charge(self, amount_cents: int, currency: str, metadata: dict[str, str],
                     idempotency_key: str) -> PaymentIntent:
        """A confirmed intent captured at once (capture_method=automatic): a plain charge, for
        what is paid up front (subscriptions). `succeeded` when the money is taken."""
        if self.mocked:
            digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:8]
            return self._mock.setdefault(idempotency_key, PaymentIntent(
                f"pi_mock_{digest}", "succeeded", amount_cents, currency.lower()))
        form = {"amount": str(amount_cents), "currency": currency.lower(),
                "capture_method": "automatic", "confirm": "true",
                "payment_method": "pm_card_visa"}
        form.update({f"metadata[{k}]": v for k, v in metadata.items()})
        return _intent(await self._post("/v1/payment_intents", form, idempotency_key))

    async def capture(self, intent_id: str, idempotency_key: str) -> PaymentIntent:
        if self.mocked:
            return PaymentIntent(intent_id, "succeeded", 0, "")
        return _intent(await self._post(f"/v1/payment_intents/{intent_id}/capture", {},
                                        idempotency_key))

    async def retrieve(self, intent_id: str) -> PaymentIntent:
        """The intent as the provider sees it now (a read: no idempotency key needed)."""
        if self.mocked:  # the simulation keeps no state past creation
            return PaymentIntent(intent_id, "requires_capture", 0, "")
        return _intent(await self._get(f"/v1/payment_intents/{intent_id}"))

    async def cancel(self, intent_id: str, idempotency_key: str,
                     reason: str = "requested_by_customer") -> PaymentIntent:
        """Void an uncaptured intent: the held money goes back to the customer."""
        if self.mocked:
            return PaymentIntent(intent_id, "canceled", 0, "")
        return _intent(await self._post(f"/v1/payment_intents/{intent_id}/cancel",
                                        {"cancellation_reason": reason}, idempotency_key))


_client: Stripe | None = None


def stripe() -> Stripe:
    """The process-wide client (built from settings on first use)."""
    global _client
    if _client is None:
        _client = Stripe()
    return _client
