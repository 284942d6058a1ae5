"""Why a use case refused, in the domain's words. `web/http.py` maps each kind to its status."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """A refusal with the contract's message and detail (None: the answer has no detail)."""

    def __init__(self, message: str, detail: str | None = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class NotFound(ServiceError):
    def __init__(self, entity: str, ident: Any = None, *, detail: str | None = None) -> None:
        super().__init__(f"{entity} not found",
                         detail if detail is not None else f"{entity} with id '{ident}' was not found")


class Forbidden(ServiceError):
    """The caller may not do this to this thing."""


class Conflict(ServiceError):
    """The thing is in a state that forbids the request (another one exists, one is running)."""


class Invalid(ServiceError):
    """The request breaks a rule of the domain (bad promo, nothing left to pay, ...)."""


class Unprocessable(ServiceError):
    """Well-formed, but the thing's state does not allow it (paying for a finished booking)."""


class ProviderUnavailable(ServiceError):
    """The payment provider could not be reached or answered unexpectedly."""

    def __init__(self, detail: str) -> None:
        super().__init__("payment provider unavailable", detail)


class PaymentDeclined(ServiceError):
    """The provider's final answer: the customer's card was refused."""

    def __init__(self, detail: str) -> None:
        super().__init__("payment failed", detail)
