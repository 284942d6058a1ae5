"""core/retry.py: transient failures are waited out with capped backoff; nothing else is."""

from __future__ import annotations

import asyncio

import pytest

from core.db import DatabaseUnavailable
from core.retry import retrying


class Clock:
    """Records the backoff instead of sleeping it."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def failing(times: int, exc: BaseException, result: str = "done"):
    calls = {"n": 0}

    async def call() -> str:
        calls["n"] += 1
        if calls["n"] <= times:
            raise exc
        return result
    return call, calls


async def test_transient_failures_are_retried_with_capped_exponential_backoff() -> None:
    clock = Clock()
    call, calls = failing(7, DatabaseUnavailable("lock timeout"))
    assert await retrying(call, "t", sleep=clock.sleep) == "done"
    assert calls["n"] == 8
    assert clock.slept == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]


async def test_other_errors_propagate_at_once() -> None:
    clock = Clock()
    call, calls = failing(1, KeyError("bug"))
    with pytest.raises(KeyError):
        await retrying(call, "t", sleep=clock.sleep)
    assert calls["n"] == 1 and clock.slept == []


async def test_the_transient_set_is_the_callers() -> None:
    clock = Clock()
    call, calls = failing(2, ConnectionError("broker moving"))
    assert await retrying(call, "t", transient=(Exception,), sleep=clock.sleep) == "done"
    assert calls["n"] == 3


async def test_cancellation_is_never_swallowed() -> None:
    """A stopping worker cancels its agents: even a catch-all transient set lets that through."""
    call, _ = failing(1, asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        await retrying(call, "t", transient=(Exception,), sleep=Clock().sleep)
