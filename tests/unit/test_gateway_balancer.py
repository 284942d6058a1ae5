"""gateway/balancer.py and gateway/upstream.py without workers: the ejection rules, the order
of tries, the retry rule, and the lean client against small raw HTTP servers."""

from __future__ import annotations

import asyncio

import pytest

from gateway.balancer import Balancer, Failure, failover, may_retry
from gateway.routes import Upstream
from gateway.upstream import AnswerTimeout, ConnectFailed, ConnectionBroken, LeanClient

A, B, C = "http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"


def test_round_robin_over_the_workers_that_are_up() -> None:
    b = Balancer([A, B, C])
    assert [b.order([A, B, C])[0] for _ in range(6)] == [A, B, C, A, B, C]
    b.backends[B].up = False
    firsts = [b.order([A, B, C]) for _ in range(4)]
    assert all(order[-1] == B for order in firsts)  # the ejected one only as a last resort
    assert {order[0] for order in firsts} == {A, C}


def test_refusal_and_timeout_eject_at_once_resets_after_two() -> None:
    b = Balancer([A, B], eject_after=2)
    b.failed(A, Failure.CONNECT)
    b.failed(B, Failure.RESET)
    assert not b.is_up(A) and b.is_up(B)
    b.succeeded(B)  # an answer resets the count
    b.failed(B, Failure.RESET)
    assert b.is_up(B)
    b.failed(B, Failure.RESET)
    assert not b.is_up(B)
    b.succeeded(A)  # a real answer from an ejected worker takes it back
    assert b.is_up(A)
    c = Balancer([A])
    c.failed(A, Failure.TIMEOUT)
    assert not c.is_up(A)


def test_only_safe_methods_are_retried_after_a_possible_delivery() -> None:
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        assert may_retry(Failure.CONNECT, method)
    assert may_retry(Failure.TIMEOUT, "GET") and may_retry(Failure.RESET, "HEAD")
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert not may_retry(Failure.TIMEOUT, method)
        assert not may_retry(Failure.RESET, method)


@pytest.mark.parametrize(("method", "error", "tried", "answered"), [
    ("POST", ConnectFailed("refused"), [A, B], True),
    ("POST", AnswerTimeout("slow"), [A], False),
    ("GET", AnswerTimeout("slow"), [A, B], True),
    ("DELETE", ConnectionBroken("reset"), [A], False),
])
async def test_failover(method, error, tried, answered) -> None:
    b = Balancer([A, B])
    seen: list[str] = []

    async def attempt(base: str) -> str:
        seen.append(base)
        if base == A:
            raise error
        return "answer"

    b._turn[(A, B)] = 0  # noqa: SLF001 - start the round robin at A
    result, failure = await failover(b, Upstream("booking", [A, B]), method, attempt)
    assert seen == tried
    assert (result == "answer") is answered
    assert failure is (None if answered else {AnswerTimeout: Failure.TIMEOUT,
                                              ConnectionBroken: Failure.RESET}[type(error)])
    await b.close()


async def _raw_server(answer: bytes, close: bool = True):
    async def handle(reader, writer) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if answer:
            writer.write(answer)
            await writer.drain()
        if close:
            writer.close()
        else:
            await asyncio.sleep(5)
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def _body(answer) -> bytes:
    if answer.body is not None:
        return answer.body
    return b"".join([piece async for piece in answer.stream()])


async def test_lean_client_reads_sized_chunked_and_close_delimited_answers() -> None:
    client = LeanClient()
    cases = [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello", 0),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"3\r\nhel\r\n2;x=1\r\nlo\r\n0\r\nTrailer: t\r\n\r\n", b"hello", 0),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nConnection: close\r\n\r\nhi",
         b"hi", 2),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", b"0123456789", 4),
    ]
    for raw, body, limit in cases:
        server, base = await _raw_server(raw)
        answer = await client.request(base, "GET", "/x", b"", 2.0, limit or 1024)
        assert await _body(answer) == body
        server.close()
    client.close()


async def test_lean_client_errors_say_how_far_the_request_got() -> None:
    client = LeanClient(connect_timeout=1)
    server, base = await _raw_server(b"")
    server.close()
    await server.wait_closed()
    with pytest.raises(ConnectFailed):
        await client.request(base, "GET", "/", b"", 1.0, 1024)
    server, base = await _raw_server(b"", close=False)
    with pytest.raises(AnswerTimeout):
        await client.request(base, "GET", "/", b"", 0.3, 1024)
    server.close()
    server, base = await _raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    with pytest.raises(ConnectionBroken):
        await client.request(base, "GET", "/", b"", 1.0, 1024)
    server.close()
    client.close()
