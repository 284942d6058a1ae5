"""tables/routing.py: who serves a live table entry, and what the caller gets while nobody
can tell (no broker needed: the router is Faust's interface, given a stand-in here)."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

import kilat  # noqa: F401  (the app first: tables import it)
from tables.routing import OwnerUnknown, owner_url, routed_get


class Router:
    """Answers `key_store` the way Faust's router does in each situation."""

    def __init__(self, answer: object) -> None:
        self.answer = answer

    def key_store(self, table_name: str, key: str) -> object:
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


async def local() -> web.Response:
    return web.json_response({"served": "here"})


def test_owner_known() -> None:
    assert owner_url("trips", "k", Router("http://w2:6067/")) == "http://w2:6067"


@pytest.mark.parametrize("failure", [
    KeyError("no host has the partition"),
    TypeError("object of type 'NoneType' has no len()"),  # no changelog metadata yet
])
def test_owner_unknown(failure: BaseException) -> None:
    with pytest.raises(OwnerUnknown):
        owner_url("trips", "k", Router(failure))


async def test_own_key_is_served_locally() -> None:
    request = make_mocked_request("GET", "/api/v1/admin/tracking/x/live")
    resp = await routed_get(request, "trips", "k", local, router=Router("http://w1:6066"),
                            me="http://w1:6066")
    assert resp.status == 200


async def test_unknown_owner_is_not_answered_locally() -> None:
    request = make_mocked_request("GET", "/api/v1/admin/tracking/x/live")
    with pytest.raises(OwnerUnknown):
        await routed_get(request, "trips", "k", local, router=Router(TypeError()),
                         me="http://w1:6066")


async def test_a_relayed_request_is_answered_where_it_lands() -> None:
    request = make_mocked_request("GET", "/api/v1/admin/tracking/x/live",
                                  headers={"X-Kilat-Routed": "1"})
    resp = await routed_get(request, "trips", "k", local, router=Router(TypeError()),
                            me="http://w1:6066")
    assert resp.status == 200


async def test_an_owner_that_does_not_answer_is_unknown() -> None:
    request = make_mocked_request("GET", "/api/v1/admin/tracking/x/live")
    with pytest.raises(OwnerUnknown, match="did not answer"):
        await routed_get(request, "trips", "k", local, router=Router("http://127.0.0.1:9"),
                         me="http://w1:6066")
